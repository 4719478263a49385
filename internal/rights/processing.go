package rights

import (
	"context"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/subject"
)

// Processing is the answer to an integrating app's question "may I use
// this person's data for this purpose now?", taking every right the
// person used into account.
type Processing struct {
	SubjectID  string `json:"subject_id"`
	Purpose    string `json:"purpose"`
	LegalBasis string `json:"legal_basis"`
	Allowed    bool   `json:"allowed"`
	// Reasons say why not: restricted, anonymised, no_consent,
	// consent_record_tampered (the stored consent does not match its
	// ledger: not believed, and audited), objection_open, objection_upheld.
	Reasons []string `json:"reasons"`
}

// Processing answers whether subjectID's data may be used for purposeKey
// now: not while processing is restricted or the subject anonymised;
// for a consent-based purpose only with a valid consent; for one based on
// legitimate interests or a public task not while an objection is open or
// upheld.
func (s *Service) Processing(ctx context.Context, tenantID, subjectID, purposeKey string) (Processing, error) {
	st, err := s.subjects.State(ctx, tenantID, subjectID)
	if err != nil {
		return Processing{}, err
	}
	purposeKey = strings.TrimSpace(purposeKey)
	if purposeKey == "" {
		return Processing{}, errs.Field("purpose", "required: the key of a purpose of the register")
	}
	p, err := s.register.Get(ctx, tenantID, purposeKey)
	if errs.Is(err, errs.NotFound) {
		return Processing{}, errs.Field("purpose", "no purpose with the key %q in the register", purposeKey)
	}
	if err != nil {
		return Processing{}, err
	}
	out := Processing{SubjectID: subjectID, Purpose: p.Key, LegalBasis: p.LegalBasis, Reasons: []string{}}
	if st.Restricted {
		out.Reasons = append(out.Reasons, "restricted")
	}
	if st.Status == subject.StatusAnonymised {
		out.Reasons = append(out.Reasons, "anonymised")
	}
	switch p.LegalBasis {
	case register.Consent:
		c, err := s.consent.Check(ctx, tenantID, subjectID, p.Key)
		if err != nil {
			return Processing{}, err
		}
		switch {
		case c.Tampered:
			out.Reasons = append(out.Reasons, "consent_record_tampered")
		case !c.Granted:
			out.Reasons = append(out.Reasons, "no_consent")
		}
	case register.LegitimateInterests, register.PublicTask:
		os, err := s.objections(ctx, tenantID, " AND subject_id = ? AND purpose_key = ?", subjectID, p.Key)
		if err != nil {
			return Processing{}, err
		}
		if len(os) > 0 && os[0].Status != ObjectionOverridden {
			out.Reasons = append(out.Reasons, "objection_"+os[0].Status)
		}
	}
	out.Allowed = len(out.Reasons) == 0
	return out, nil
}

// notifiedTypes are the requests whose outcome the controller must tell
// each recipient of the data (Art. 19).
var notifiedTypes = []string{"rectification", "erasure", "restriction"}

// recipients lists the recipients the register names, for Art. 19.
func (s *Service) recipients(ctx context.Context, tenantID string) ([]string, error) {
	ps, err := s.register.List(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := []string{}
	for _, p := range ps {
		for _, r := range p.Recipients {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}
