package blobstore

// Disk is the seam through which a local region makes writes durable.
type Disk = disk

// OSDisk is the real one.
type OSDisk = osDisk

// OpenDirForTest opens a local region at root writing through d.
func OpenDirForTest(root string, d Disk) (*Store, error) {
	s, err := openDir(root, d)
	if err != nil {
		return nil, err
	}
	return &Store{Region: "test", Location: "file://" + root, b: s}, nil
}
