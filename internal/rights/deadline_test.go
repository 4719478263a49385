package rights_test

import (
	"testing"
	"time"

	"github.com/custodia/custodia/internal/rights"
)

func TestDeadlines(t *testing.T) {
	for _, c := range []struct {
		name, zone, received string
		months               int
		want                 string // the last microsecond of the due day, in UTC
	}{
		{"mid-month", "UTC", "2026-01-15T10:00:00Z", 1, "2026-02-15T23:59:59.999999Z"},
		{"31 January, common year", "UTC", "2026-01-31T10:00:00Z", 1, "2026-02-28T23:59:59.999999Z"},
		{"31 January, leap year", "UTC", "2028-01-31T10:00:00Z", 1, "2028-02-29T23:59:59.999999Z"},
		{"29 January, common year", "UTC", "2026-01-29T00:00:00Z", 1, "2026-02-28T23:59:59.999999Z"},
		{"28 February", "UTC", "2026-02-28T12:00:00Z", 1, "2026-03-28T23:59:59.999999Z"},
		{"29 February of a leap year", "UTC", "2028-02-29T12:00:00Z", 1, "2028-03-29T23:59:59.999999Z"},
		{"31 March → 30 April", "UTC", "2026-03-31T08:00:00Z", 1, "2026-04-30T23:59:59.999999Z"},
		{"31 December → next year", "UTC", "2026-12-31T23:00:00Z", 1, "2027-01-31T23:59:59.999999Z"},
		{"received at the last microsecond of a day", "UTC", "2026-05-31T23:59:59.999999Z", 1, "2026-06-30T23:59:59.999999Z"},
		// The tenant's day, not UTC's: 23:30 UTC on 31 January is 1 February in Paris.
		{"time zone moves the day forward", "Europe/Paris", "2026-01-31T23:30:00Z", 1, "2026-03-01T22:59:59.999999Z"},
		{"time zone moves the day back", "America/Los_Angeles", "2026-03-01T03:00:00Z", 1, "2026-03-29T06:59:59.999999Z"}, // 28 Feb 19:00 PST → 28 March, which ends in PDT
		{"west of UTC, across a year", "Pacific/Honolulu", "2027-01-01T05:00:00Z", 1, "2027-02-01T09:59:59.999999Z"},
		{"east of UTC, across a year", "Asia/Tokyo", "2026-12-31T16:00:00Z", 1, "2027-02-01T14:59:59.999999Z"},
		// Daylight saving time: the due day ends at local midnight, whatever the offset that day.
		{"received in winter, due after spring forward", "Europe/Berlin", "2026-03-01T09:00:00Z", 1, "2026-04-01T21:59:59.999999Z"},
		{"due on the day clocks go forward", "Europe/Berlin", "2026-02-28T11:00:00Z", 1, "2026-03-28T22:59:59.999999Z"},
		{"due on the day clocks go back", "Europe/Berlin", "2026-09-25T11:00:00Z", 1, "2026-10-25T22:59:59.999999Z"},
		{"US spring forward day", "America/New_York", "2026-02-08T15:00:00Z", 1, "2026-03-09T03:59:59.999999Z"},
		// The extension: three months from receipt, same rules.
		{"extension from 30 November", "UTC", "2026-11-30T10:00:00Z", 3, "2027-02-28T23:59:59.999999Z"},
		{"extension from 31 May", "UTC", "2026-05-31T10:00:00Z", 3, "2026-08-31T23:59:59.999999Z"},
		{"extension across DST", "Europe/London", "2026-08-15T10:00:00Z", 3, "2026-11-15T23:59:59.999999Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			loc, err := time.LoadLocation(c.zone)
			if err != nil {
				t.Fatal(err)
			}
			received, err := time.Parse(time.RFC3339Nano, c.received)
			if err != nil {
				t.Fatal(err)
			}
			got := rights.Due(received, loc, c.months)
			if got.Format(time.RFC3339Nano) != c.want {
				t.Errorf("Due(%s in %s, %d) = %s; want %s", c.received, c.zone, c.months, got.Format(time.RFC3339Nano), c.want)
			}
		})
	}
	loc := time.UTC
	r := time.Date(2026, 1, 31, 12, 0, 0, 0, loc)
	if !rights.DueAt(r, loc).Equal(rights.Due(r, loc, 1)) || !rights.ExtendedDueAt(r, loc).Equal(rights.Due(r, loc, 3)) {
		t.Error("DueAt/ExtendedDueAt differ from Due with 1 and 3 months")
	}
}
