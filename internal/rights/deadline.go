package rights

import (
	"time"
	_ "time/tzdata" // tenant time zones work on machines without a zoneinfo database
)

// Deadlines (GDPR Art. 12(3)): a request is answered within one month of
// receipt, extendable by two further months. "One month" is read the way
// the EU reads periods (Regulation 1182/71): the same calendar day of the
// next month, or that month's last day when it has no such day — 31
// January → 28 (29) February — and the period ends at the end of that day
// in the tenant's time zone.

// Due returns the end of the day, in loc, `months` calendar months after
// received.
func Due(received time.Time, loc *time.Location, months int) time.Time {
	r := received.In(loc)
	y, m, d := r.Date()
	first := time.Date(y, m+time.Month(months), 1, 0, 0, 0, 0, loc) // normalises past December
	last := time.Date(first.Year(), first.Month()+1, 0, 0, 0, 0, 0, loc).Day()
	next := time.Date(first.Year(), first.Month(), min(d, last)+1, 0, 0, 0, 0, loc) // the following midnight
	return next.Add(-time.Microsecond).UTC()
}

// DueAt is when a request received at received must be answered.
func DueAt(received time.Time, loc *time.Location) time.Time { return Due(received, loc, 1) }

// ExtendedDueAt is the latest an extension can push the answer to: three
// months after receipt.
func ExtendedDueAt(received time.Time, loc *time.Location) time.Time { return Due(received, loc, 3) }
