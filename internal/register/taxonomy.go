package register

import (
	_ "embed"
	"encoding/json"
	"regexp"
	"strings"
)

// Taxonomy is the shipped vocabulary of data and subject categories. Its
// keys are those of fideslang, so a register exported here reads in tools
// that speak it; tenants add their own under the "custom." prefix.
type Taxonomy struct {
	Version           string     `json:"version"`
	CompatibleWith    string     `json:"compatible_with"`
	DataCategories    []Category `json:"data_categories"`
	SubjectCategories []Category `json:"subject_categories"`
}

// Category is one entry of the taxonomy.
type Category struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Special string `json:"special,omitempty"` // "art9": special category; "art10": criminal convictions
}

//go:embed taxonomy.json
var taxonomyJSON []byte

var shipped = func() Taxonomy {
	var t Taxonomy
	if err := json.Unmarshal(taxonomyJSON, &t); err != nil {
		panic("register: taxonomy.json: " + err.Error())
	}
	return t
}()

// Shipped returns the taxonomy that comes with this version of Custodia.
func Shipped() Taxonomy { return shipped }

// customKey is a tenant's own category: "custom." and dotted snake_case.
var customKey = regexp.MustCompile(`^custom(\.[a-z][a-z0-9_]{0,40}){1,4}$`)

// lookup finds key among cats, or reports a custom key.
func lookup(cats []Category, key string) (Category, bool) {
	for _, c := range cats {
		if c.Key == key {
			return c, true
		}
	}
	if customKey.MatchString(key) {
		return Category{Key: key}, true
	}
	return Category{}, false
}

// Specials are the special kinds ("art9", "art10") among the data
// categories: a key is special when it or one of its ancestors is.
func Specials(keys []string) map[string]bool {
	kinds := map[string]bool{}
	for _, k := range keys {
		for _, c := range shipped.DataCategories {
			if c.Special != "" && (k == c.Key || strings.HasPrefix(k, c.Key+".")) {
				kinds[c.Special] = true
			}
		}
	}
	return kinds
}
