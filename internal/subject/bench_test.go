package subject_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/subject"
)

// BenchmarkImport100k imports a 100 000-contact CSV file (email, phone,
// source, name, one attribute) into a fresh tenant: parse, check every
// row (incl. a blind-index lookup per identifier), seal, insert in chunks
// with one audit event per contact. One op is the whole file.
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	file := importFile(0, n)
	env := coretest.NewWith(b, "", coretest.AsInProduction)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		tn, _ := env.AddTenant(b, fmt.Sprintf("bench%d", i), "owner@bench.example")
		b.StartTimer()
		rows, problems, err := subject.ParseCSV(strings.NewReader(file))
		if err != nil {
			b.Fatal(err)
		}
		res, err := env.Core.Subjects.Import(ctx, tn.ID, rows, problems, subject.ExistingFail, false, nil)
		if err != nil || res.Created != n {
			b.Fatalf("import: %+v %v", res, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "contacts/s")
}

// importFile is a CSV file of n contacts, the first numbered from.
func importFile(from, n int) string {
	var sb strings.Builder
	sb.WriteString("email,phone,source,name,attributes.company\n")
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&sb, "person%07d@example.org,+4477%08d,fair 2026,Person %d,Company %d\n", i, i, i, i%500)
	}
	return sb.String()
}

// BenchmarkImportTo1M imports ten files of 100 000 contacts one after the
// other into one tenant and reports the rate of the first and of the
// tenth: whether an import slows as the tenant grows to 1 000 000.
func BenchmarkImportTo1M(b *testing.B) {
	const n, files = 100_000, 10
	env := coretest.NewWith(b, "", coretest.AsInProduction)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		tn, _ := env.AddTenant(b, fmt.Sprintf("grow%d", i), "owner@bench.example")
		for f := range files {
			rows, problems, err := subject.ParseCSV(strings.NewReader(importFile(f*n, n)))
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			res, err := env.Core.Subjects.Import(ctx, tn.ID, rows, problems, subject.ExistingFail, false, nil)
			if err != nil || res.Created != n {
				b.Fatalf("import %d: %+v %v", f, res, err)
			}
			rate := float64(n) / time.Since(start).Seconds()
			switch f {
			case 0:
				b.ReportMetric(rate, "first-100k-contacts/s")
			case files - 1:
				b.ReportMetric(rate, "tenth-100k-contacts/s")
			}
		}
	}
}
