package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

//go:embed static
var staticFS embed.FS

// asset is one static file, named by its content's hash so that it can be
// cached for ever.
type asset struct {
	name   string // style.1a2b3c4d5e6f.css
	ctype  string
	body   []byte
	gzip   []byte // nil when not worth it
	digest string
}

// assets are the static files by their plain name (style.css).
type assets map[string]*asset

func loadAssets() (assets, error) {
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, err
	}
	as := assets{}
	for _, e := range entries {
		b, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ext := path.Ext(e.Name())
		a := &asset{name: strings.TrimSuffix(e.Name(), ext) + "." + hex.EncodeToString(sum[:6]) + ext,
			ctype: mime.TypeByExtension(ext), body: b, digest: hex.EncodeToString(sum[:])}
		if a.ctype == "" {
			return nil, fmt.Errorf("static %s: unknown type", e.Name())
		}
		if len(b) > 1024 {
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			a.gzip = z.Bytes()
		}
		as[e.Name()] = a
	}
	return as, nil
}

// path answers the URL of the static file name; the templates fail at
// start-up on a name that is not there.
func (as assets) path(name string) (string, error) {
	a, ok := as[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return "/static/" + a.name, nil
}

// static answers a static file by its hashed name, cached as immutable,
// gzipped for a client that takes it.
func (c *Console) static(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var a *asset
	for _, x := range c.assets {
		if x.name == name {
			a = x
		}
	}
	if a == nil {
		return errs.E(errs.NotFound, "no such file")
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Vary", "Accept-Encoding")
	body := a.body
	if a.gzip != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = a.gzip
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	_, err := w.Write(body)
	return err
}
