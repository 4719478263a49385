package subject_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/subject"
)

// BenchmarkImport100k imports a 100 000-contact CSV file (email, phone,
// source, name, one attribute) into a fresh tenant: parse, check every
// row (incl. a blind-index lookup per identifier), seal, insert in chunks
// with one audit event per contact. One op is the whole file.
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	var sb strings.Builder
	sb.WriteString("email,phone,source,name,attributes.company\n")
	for i := range n {
		fmt.Fprintf(&sb, "person%06d@example.org,+4477%08d,fair 2026,Person %d,Company %d\n", i, i, i, i%500)
	}
	file := sb.String()
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
