package api

import (
	"bytes"
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/register"
)

func (a *API) taxonomy(w http.ResponseWriter, _ *http.Request) error {
	httpio.JSON(w, http.StatusOK, register.Shipped())
	return nil
}

// purposeBody is a purpose as clients send it; absent fields of a PATCH
// stay as they are.
type purposeBody struct {
	Key               string               `json:"key"`
	Name              *string              `json:"name"`
	Description       *string              `json:"description"`
	LegalBasis        *string              `json:"legal_basis"`
	SpecialConditions *[]string            `json:"special_conditions"`
	DataCategories    *[]string            `json:"data_categories"`
	SubjectCategories *[]string            `json:"subject_categories"`
	Recipients        *[]string            `json:"recipients"`
	Transfers         *[]register.Transfer `json:"transfers"`
	RetentionDays     *int                 `json:"retention_days"`
	ConsentValidDays  *int                 `json:"consent_valid_days"`
	NoticeText        string               `json:"notice_text"`
}

func (b purposeBody) patch() register.Patch {
	return register.Patch{Name: b.Name, Description: b.Description, LegalBasis: b.LegalBasis, SpecialConditions: b.SpecialConditions,
		DataCategories: b.DataCategories, SubjectCategories: b.SubjectCategories, Recipients: b.Recipients, Transfers: b.Transfers,
		RetentionDays: b.RetentionDays, ConsentValidDays: b.ConsentValidDays}
}

func deref[T any](v *T) T {
	var zero T
	if v == nil {
		return zero
	}
	return *v
}

func (a *API) createPurpose(w http.ResponseWriter, r *http.Request) error {
	var in purposeBody
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	p, err := a.register.Create(r.Context(), principal(r).TenantID, register.New{NoticeText: in.NoticeText, Purpose: register.Purpose{
		Key: in.Key, Name: deref(in.Name), Description: deref(in.Description), LegalBasis: deref(in.LegalBasis),
		SpecialConditions: deref(in.SpecialConditions), DataCategories: deref(in.DataCategories),
		SubjectCategories: deref(in.SubjectCategories), Recipients: deref(in.Recipients), Transfers: deref(in.Transfers),
		RetentionDays: deref(in.RetentionDays), ConsentValidDays: deref(in.ConsentValidDays)}})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/purposes/"+p.Key)
	httpio.JSON(w, http.StatusCreated, p)
	return nil
}

func (a *API) listPurposes(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.register.List(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[register.Purpose]{Items: ps})
	return nil
}

func (a *API) getPurpose(w http.ResponseWriter, r *http.Request) error {
	p, err := a.register.Get(r.Context(), principal(r).TenantID, r.PathValue("key"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, p)
	return nil
}

func (a *API) updatePurpose(w http.ResponseWriter, r *http.Request) error {
	var in purposeBody
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if in.Key != "" {
		return errs.Field("key", "cannot change; create a new purpose")
	}
	if in.NoticeText != "" {
		return errs.Field("notice_text", "a new text is a new version: POST /api/v1/purposes/{key}/notices")
	}
	p, err := a.register.Update(r.Context(), principal(r).TenantID, r.PathValue("key"), in.patch())
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, p)
	return nil
}

func (a *API) listNotices(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.register.Notices(r.Context(), principal(r).TenantID, r.PathValue("key"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[register.Notice]{Items: ns})
	return nil
}

func (a *API) addNotice(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Text string `json:"text"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	n, err := a.register.AddNotice(r.Context(), principal(r).TenantID, r.PathValue("key"), in.Text)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, n)
	return nil
}

func (a *API) exportRegister(w http.ResponseWriter, r *http.Request) error {
	return a.SendRegister(w, r, formatParam(r))
}

// SendRegister answers the processing register as CSV or JSON (format),
// as the API's export does.
func (a *API) SendRegister(w http.ResponseWriter, r *http.Request, format string) error {
	p := principal(r)
	t, err := a.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := a.register.Export(r.Context(), p.TenantID, t.Name, format, &buf); err != nil {
		return err
	}
	return a.attachment(w, "register", format, buf.Bytes())
}
