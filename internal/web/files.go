package web

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
)

// Files: spaces with the region their content is kept in, folders,
// uploads (resumable through the API's upload sessions when the script
// runs, a plain form otherwise), versions, grants and where they come
// from, the trash, moving a space to another region, and the report of
// where the organisation's data is. A folder or file is named by the
// space in the path and its path in the query (?path=/a/b), as the API
// names them: relative to the space, "" for its top.

// spacesData is what the spaces page shows.
type spacesData struct {
	Spaces  []space.Space
	Regions []string
	CanEdit bool
}

func (c *Console) spacesPage(w http.ResponseWriter, r *http.Request) error {
	return c.showSpaces(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showSpaces(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	p := signedIn(r)
	ss, err := c.spaces.List(r.Context(), p)
	if err != nil {
		return err
	}
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	if f.Value("region") == "" {
		f.Values.Set("region", t.Region)
	}
	return c.render(w, r, code, "spaces", &view{Title: "Files", Form: f,
		Data: spacesData{Spaces: ss, Regions: c.tenants.Regions(t), CanEdit: p.Can("spaces:write")}})
}

func (c *Console) createSpace(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("name", "a name for the space"); len(f.Problems) == 0 {
		s, err := c.spaces.Create(r.Context(), signedIn(r), strings.TrimSpace(f.Value("name")), f.Value("region"))
		if err == nil {
			return c.redirect(w, r, "/spaces/"+s.ID, "space-created")
		}
		if !f.refused(err, "name", map[string]string{"name": "name", "region": "region"}) {
			return err
		}
	}
	return c.showSpaces(w, r, http.StatusUnprocessableEntity, f)
}

// folderData is what a folder's page shows.
type folderData struct {
	Space     space.Space
	Path      string  // "" (the top of the space) or "a/b"
	Crumbs    []crumb // the folders above, from the space down
	Items     []files.Item
	Migration files.Migration
	Regions   []string // where the space could move
	CanEdit   bool
}

type crumb struct{ Name, Path string }

func (c *Console) folderPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.folder(r, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "folder", &view{Title: folderTitle(d), Back: backOf(d), Form: &form{Values: url.Values{}}, Data: d})
}

func folderTitle(d folderData) string {
	if d.Path == "" {
		return d.Space.Name
	}
	return path.Base(d.Path)
}

func backOf(d folderData) string {
	if d.Path == "" {
		return "/spaces"
	}
	return folderURL(d.Space.ID, parent(d.Path))
}

// parent is the folder an item at p is in: "" for the top of the space.
func parent(p string) string {
	if d := path.Dir(strings.Trim(p, "/")); d != "." {
		return d
	}
	return ""
}

// folderURL is the page of the folder at p in space id.
func folderURL(id, p string) string {
	if p = strings.Trim(p, "/"); p == "" {
		return "/spaces/" + id
	}
	return "/spaces/" + id + "?path=" + url.QueryEscape(p)
}

// folder reads the folder at p of the space in the path.
func (c *Console) folder(r *http.Request, p string) (folderData, error) {
	pr := signedIn(r)
	ctx := r.Context()
	sp, err := c.spaces.Get(ctx, pr, r.PathValue("id"))
	if err != nil {
		return folderData{}, err
	}
	p = strings.Trim(p, "/")
	items, err := c.files.List(ctx, pr, sp.ID, p)
	if err != nil {
		return folderData{}, err
	}
	d := folderData{Space: sp, Path: p, Items: items, CanEdit: pr.Can("spaces:write") && sp.Access == space.Editor}
	at := ""
	for _, name := range strings.Split(p, "/") {
		if name != "" {
			at = path.Join(at, name)
			d.Crumbs = append(d.Crumbs, crumb{name, at})
		}
	}
	if d.Migration, err = c.files.MigrationStatus(ctx, pr, sp.ID); err != nil {
		return d, err
	}
	t, err := c.tenants.ByID(ctx, pr.TenantID)
	if err != nil {
		return d, err
	}
	for _, reg := range c.tenants.Regions(t) {
		if reg != sp.Region {
			d.Regions = append(d.Regions, reg)
		}
	}
	return d, nil
}

func (c *Console) makeFolder(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	at := strings.Trim(f.Value("path"), "/")
	if f.required("name", "a name for the folder"); len(f.Problems) == 0 {
		_, err := c.files.Mkdir(r.Context(), signedIn(r), r.PathValue("id"), path.Join(at, f.Value("name")))
		if err == nil {
			return c.redirect(w, r, folderURL(r.PathValue("id"), at), "folder-created")
		}
		if !f.refused(err, "name", map[string]string{"path": "name", "name": "name"}) {
			return err
		}
	}
	d, err := c.folder(r, at)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "folder", &view{Title: folderTitle(d), Back: backOf(d), Form: f, Data: d})
}

// upload stores the file of a plain form into the folder: the console
// without its script. With the script, the page uploads through the
// API's resumable sessions instead.
func (c *Console) upload(w http.ResponseWriter, r *http.Request) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return errs.Field("file", "send the file as a form upload (multipart/form-data)")
	}
	at := ""
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return errs.Field("file", "choose a file")
		}
		if err != nil {
			return err
		}
		switch part.FormName() {
		case "path":
			b, _ := io.ReadAll(io.LimitReader(part, 4096))
			at = strings.Trim(string(b), "/")
		case "file":
			name := path.Base(strings.ReplaceAll(part.FileName(), "\\", "/"))
			if name == "" || name == "." || name == "/" {
				return errs.Field("file", "choose a file")
			}
			ctype, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
			_, _, err := c.files.Put(r.Context(), signedIn(r), r.PathValue("id"), files.Upload{Path: path.Join(at, name),
				ContentType: ctype, Length: -1, Body: part})
			if err != nil {
				return err
			}
			return c.redirect(w, r, folderURL(r.PathValue("id"), at), "file-uploaded")
		}
	}
}

// fileData is what a file's page shows.
type fileData struct {
	Space    space.Space
	Item     files.Item
	Versions []files.Version
	Folder   string // the folder it is in ("" for the top of the space)
	CanEdit  bool
}

func (c *Console) filePage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.file(r, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"to": {d.Item.Path}}}
	return c.render(w, r, http.StatusOK, "file", &view{Title: d.Item.Name, Back: folderURL(d.Space.ID, d.Folder), Form: f, Data: d})
}

func (c *Console) file(r *http.Request, p string) (fileData, error) {
	pr := signedIn(r)
	ctx := r.Context()
	sp, err := c.spaces.Get(ctx, pr, r.PathValue("id"))
	if err != nil {
		return fileData{}, err
	}
	it, err := c.files.Stat(ctx, pr, sp.ID, p)
	if err != nil {
		return fileData{}, err
	}
	d := fileData{Space: sp, Item: it, Folder: parent(it.Path), CanEdit: pr.Can("spaces:write") && sp.Access == space.Editor}
	if it.Kind == files.File {
		if d.Versions, err = c.files.Versions(ctx, pr, it.ID); err != nil { // newest first
			return d, err
		}
	}
	return d, nil
}

// downloadFile answers a file's content (a version of it with ?version=n).
func (c *Console) downloadFile(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	n, err := strconv.Atoi(or(q.Get("version"), "0"))
	if err != nil || n < 0 {
		return errs.Field("version", "a version number")
	}
	content, err := c.files.Open(r.Context(), signedIn(r), r.PathValue("id"), q.Get("path"), n)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": content.Item.Name}))
	return c.api.SendFile(w, r, content)
}

func (c *Console) moveItem(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	from, to := f.Value("path"), strings.Trim(strings.TrimSpace(f.Value("to")), "/")
	it, err := c.files.Move(r.Context(), signedIn(r), r.PathValue("id"), from, to)
	if err == nil {
		if it.Kind == files.Folder {
			return c.redirect(w, r, folderURL(r.PathValue("id"), it.Path), "moved")
		}
		return c.redirect(w, r, "/spaces/"+r.PathValue("id")+"/file?path="+url.QueryEscape(it.Path), "moved")
	}
	if !f.refused(err, "to", map[string]string{"path": "new place", "new_path": "new place", "to": "new place"}) {
		return err
	}
	d, err := c.file(r, from)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "file", &view{Title: d.Item.Name, Back: folderURL(d.Space.ID, d.Folder), Form: f, Data: d})
}

func (c *Console) trashItem(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	p := f.Value("path")
	if _, err := c.files.Trash(r.Context(), signedIn(r), r.PathValue("id"), p); err != nil {
		return err
	}
	return c.redirect(w, r, folderURL(r.PathValue("id"), parent(p)), "trashed")
}

func (c *Console) restoreVersion(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		return errs.E(errs.NotFound, "no such version")
	}
	it, err := c.files.RestoreVersion(r.Context(), signedIn(r), r.PathValue("file"), n)
	if err != nil {
		return err
	}
	return c.redirect(w, r, "/spaces/"+it.SpaceID+"/file?path="+url.QueryEscape(it.Path), "version-restored")
}

// Grants: who has access to a space or a folder, and from where.

// grantsData is what the grants page shows.
type grantsData struct {
	Space   space.Space
	Path    string // "" for the whole space
	Folder  string // the folder's id; "" for the space
	Grants  []shownGrant
	Users   []identity.UserRow
	Groups  []identity.Group
	CanEdit bool
}

// shownGrant is a grant with whom it is to and where it comes from.
type shownGrant struct {
	space.Grant
	Who, From string
}

func (c *Console) grantsPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.grants(r, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "grants", &view{Title: "Who has access", Back: folderURL(d.Space.ID, d.Path),
		Form: &form{Values: url.Values{"access": {space.Viewer}}}, Data: d})
}

func (c *Console) grants(r *http.Request, p string) (grantsData, error) {
	pr := signedIn(r)
	ctx := r.Context()
	sp, err := c.spaces.Get(ctx, pr, r.PathValue("id"))
	if err != nil {
		return grantsData{}, err
	}
	d := grantsData{Space: sp, Path: strings.Trim(p, "/"), CanEdit: pr.Can("spaces:write") && sp.Access == space.Editor}
	var gs []space.Grant
	if d.Path == "" {
		gs, err = c.spaces.Grants(ctx, pr, sp.ID)
	} else {
		var it files.Item
		if it, err = c.files.Stat(ctx, pr, sp.ID, d.Path); err != nil {
			return d, err
		}
		d.Folder = it.ID
		gs, err = c.files.FolderGrants(ctx, pr, it.ID)
	}
	if err != nil {
		return d, err
	}
	users, err := c.identity.Users(ctx, pr.TenantID, identity.UserQuery{Status: identity.StatusActive, Limit: 500})
	if err != nil {
		return d, err
	}
	d.Users = users.Items
	if d.Groups, err = c.identity.Groups(ctx, pr); err != nil {
		return d, err
	}
	names := map[string]string{}
	for _, u := range d.Users {
		names[u.ID] = or(u.Name, u.Email)
	}
	for _, g := range d.Groups {
		names[g.ID] = "Group " + g.Name
	}
	for _, g := range gs {
		sg := shownGrant{Grant: g, Who: or(names[g.UserID+g.GroupID], "Someone no longer here")}
		switch {
		case !g.Inherited:
			sg.From = "Here"
		case g.FolderID == "":
			sg.From = "The whole space"
		default:
			sg.From = "A folder above"
			if where, err := c.files.Describe(ctx, pr, g.FolderID); err == nil {
				sg.From = where
			}
		}
		d.Grants = append(d.Grants, sg)
	}
	return d, nil
}

func (c *Console) grant(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	d, err := c.grants(r, f.Value("path"))
	if err != nil {
		return err
	}
	in := space.GrantInput{Access: f.Value("access")}
	who := f.Value("who")
	switch {
	case strings.HasPrefix(who, "user:"):
		in.UserID = strings.TrimPrefix(who, "user:")
	case strings.HasPrefix(who, "group:"):
		in.GroupID = strings.TrimPrefix(who, "group:")
	default:
		f.add("who", "Choose whom to give access to.")
	}
	if len(f.Problems) == 0 {
		if d.Folder == "" {
			_, err = c.spaces.Grant(r.Context(), signedIn(r), d.Space.ID, in)
		} else {
			_, err = c.files.GrantFolder(r.Context(), signedIn(r), d.Folder, in)
		}
		if err == nil {
			return c.redirect(w, r, "/spaces/"+d.Space.ID+"/grants?path="+url.QueryEscape(d.Path), "granted")
		}
		if !f.refused(err, "who", map[string]string{"access": "access", "user_id": "person", "group_id": "group"}) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "grants", &view{Title: "Who has access", Back: folderURL(d.Space.ID, d.Path), Form: f, Data: d})
}

func (c *Console) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	d, err := c.grants(r, f.Value("path"))
	if err != nil {
		return err
	}
	if d.Folder == "" {
		err = c.spaces.Revoke(r.Context(), signedIn(r), d.Space.ID, r.PathValue("grant"))
	} else {
		err = c.files.RevokeFolder(r.Context(), signedIn(r), d.Folder, r.PathValue("grant"))
	}
	if err != nil {
		return err
	}
	return c.redirect(w, r, "/spaces/"+d.Space.ID+"/grants?path="+url.QueryEscape(d.Path), "revoked")
}

// migrateSpace starts moving the space's content to another region.
func (c *Console) migrateSpace(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if _, err := c.files.StartMigration(r.Context(), signedIn(r), r.PathValue("id"), f.Value("region")); err != nil {
		return err
	}
	return c.redirect(w, r, "/spaces/"+r.PathValue("id")+"#region", "migration-started")
}

// The trash: what was deleted, restored or purged for good.

func (c *Console) trashPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	items, err := c.files.ListTrash(r.Context(), p)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "trash", &view{Title: "Trash", Back: "/spaces",
		Data: map[string]any{"Items": items, "CanEdit": p.Can("spaces:write")}})
}

func (c *Console) restoreTrash(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.files.Restore(r.Context(), signedIn(r), r.PathValue("item")); err != nil {
		return err
	}
	return c.redirect(w, r, "/trash", "restored")
}

func (c *Console) purgeTrash(w http.ResponseWriter, r *http.Request) error {
	if err := c.files.Purge(r.Context(), signedIn(r), r.PathValue("item")); err != nil {
		return err
	}
	return c.redirect(w, r, "/trash", "purged")
}

// residencyPage is the report of where the organisation's data is.
func (c *Console) residencyPage(w http.ResponseWriter, r *http.Request) error {
	rep, err := c.api.Residency(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "residency", &view{Title: "Where your data is", Back: "/spaces", Data: rep})
}
