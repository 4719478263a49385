package sqldb

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// A keyset cursor names where a page sorted by (a number, an id) ended:
// the next page starts after it. It is opaque to clients.

// EncodeCursor makes the cursor of the row (at, id).
func EncodeCursor(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + ":" + id))
}

// DecodeCursor reads a cursor EncodeCursor made; anything else is a
// refusal naming the field "cursor".
func DecodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if at, id, ok := strings.Cut(string(b), ":"); ok {
			if n, err := strconv.ParseInt(at, 10, 64); err == nil && id != "" {
				return n, id, nil
			}
		}
	}
	return 0, "", errs.Field("cursor", "not a cursor from a previous page")
}
