package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/config"
)

func TestLoadAndValidate(t *testing.T) {
	env := map[string]string{
		"CUSTODIA_DATA_DIR": "rel/data", "CUSTODIA_ADDR": "0.0.0.0:9443",
		"CUSTODIA_REGIONS": "eu-west=file:///srv/eu, us-east=s3://bucket?region=us-east-1", "CUSTODIA_MIN_FREE_MB": "1024",
	}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || c.Addr != "0.0.0.0:9443" || c.MinFreeMB != 1024 || config.Default().MinFreeMB != 256 {
		t.Errorf("config = %+v", c)
	}
	if got := strings.Join(c.RegionNames(), ","); got != "eu-west,us-east" || c.Regions[1].URL != "s3://bucket?region=us-east-1" {
		t.Errorf("regions = %+v", c.Regions)
	}
	d := config.Default()
	if err := d.Validate(); err != nil || len(d.Regions) != 1 || d.Regions[0].Name != "local" ||
		!strings.HasSuffix(d.Regions[0].URL, "/regions/local") {
		t.Errorf("default regions = %+v, %v", d.Regions, err)
	}
}

func TestDefaultPublicURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8443":           "https://localhost:8443",
		"[::1]:443":                "https://localhost:443",
		"0.0.0.0:8443":             "https://localhost:8443",
		":8443":                    "https://localhost:8443",
		"custodia.example.org:443": "https://custodia.example.org:443",
		"10.1.2.3:8443":            "https://10.1.2.3:8443",
	} {
		c := config.Default()
		c.Addr = addr
		if err := c.Validate(); err != nil || c.PublicURL != want {
			t.Errorf("Addr %s: public URL %q, %v; want %q", addr, c.PublicURL, err, want)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, mutate := range map[string]func(*config.Config){
		"no data dir":      func(c *config.Config) { c.DataDir = "" },
		"bad addr":         func(c *config.Config) { c.Addr = "8443" },
		"cert without key": func(c *config.Config) { c.TLSCert = "/x.pem" },
		"bad log level":    func(c *config.Config) { c.LogLevel = "loud" },
		"negative floor":   func(c *config.Config) { c.MinFreeMB = -1 },
		"operator name":    func(c *config.Config) { c.OperatorEmail = "Ops <ops@example.org>" },
		"backup time":      func(c *config.Config) { c.BackupAt = "2am" },
		"pprof exposed":    func(c *config.Config) { c.PprofAddr = "0.0.0.0:6060" },
		"pprof no port":    func(c *config.Config) { c.PprofAddr = "127.0.0.1" },
		"operator address": func(c *config.Config) { c.OperatorEmail = "ops" },
		"duplicate regions": func(c *config.Config) {
			c.Regions = []config.Region{{Name: "a", URL: "file:///a"}, {Name: "a", URL: "file:///b"}}
		},
	} {
		c := config.Default()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, v := range []string{"-1", "1GB", "x"} {
		if _, err := config.Load(func(k string) string { return map[string]string{"CUSTODIA_MIN_FREE_MB": v}[k] }); err == nil {
			t.Errorf("CUSTODIA_MIN_FREE_MB=%s accepted", v)
		}
	}
	for _, bad := range []string{"noequals", "=file:///x", "Upper=file:///x", "x="} {
		if _, err := config.ParseRegion(bad); err == nil {
			t.Errorf("ParseRegion(%q) accepted", bad)
		}
	}
}
