package web

import (
	"net/http"
	"strings"
)

// The links about a sign-in address open pages (the secret in the path,
// as the privacy portal's links): /account/email/{token} confirms a new
// address, /account/email-undo/{token} undoes a change ("it was not me").
// Opening a page changes nothing; its form's POST does.

func emailPurpose(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/account/email-undo/") {
		return "undo"
	}
	return "confirm"
}

func (c *Console) emailLinkPage(w http.ResponseWriter, r *http.Request) error {
	purpose := emailPurpose(r)
	l, err := c.identity.EmailLinkInfo(r.Context(), r.PathValue("token"), purpose)
	if err != nil {
		return err
	}
	title := "Confirm your new sign-in address"
	if purpose == "undo" {
		title = "Your sign-in address was changed"
	}
	return c.render(w, r, http.StatusOK, "email", &view{Title: title, Org: l.Organisation,
		Data: map[string]any{"Link": l, "Undo": purpose == "undo"}})
}

func (c *Console) useEmailLink(w http.ResponseWriter, r *http.Request) error {
	purpose := emailPurpose(r)
	use, title := c.identity.ConfirmEmail, "Your sign-in address is changed"
	if purpose == "undo" {
		use, title = c.identity.UndoEmail, "The change is undone"
	}
	l, err := use(r.Context(), r.PathValue("token"), c.api.Client(r))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "email", &view{Title: title, Org: l.Organisation,
		Data: map[string]any{"Link": l, "Undo": purpose == "undo", "Done": true}})
}
