// Package config holds Custodia's configuration: one struct, filled from
// defaults, then environment variables, then command-line flags, and
// validated once before anything starts.
package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Config is everything an operator can set.
type Config struct {
	DataDir      string   // CUSTODIA_DATA_DIR
	DatabaseURL  string   // CUSTODIA_DATABASE_URL; empty = SQLite in DataDir
	Addr         string   // CUSTODIA_ADDR
	MasterKeyURL string   // CUSTODIA_MASTER_KEY_URL; empty = key file in DataDir
	Regions      []Region // CUSTODIA_REGIONS ("name=url,name=url"); default one region "local"
	TLSCert      string   // CUSTODIA_TLS_CERT; empty = self-signed in DataDir
	TLSKey       string   // CUSTODIA_TLS_KEY
	LogLevel     string   // CUSTODIA_LOG_LEVEL: debug, info, warn, error

	ShutdownTimeout time.Duration
}

// Region is a named blob store.
type Region struct {
	Name string
	URL  string
}

// Default returns the embedded-default configuration.
func Default() Config {
	return Config{
		DataDir:         "./custodia-data",
		Addr:            "127.0.0.1:8443",
		LogLevel:        "info",
		ShutdownTimeout: 20 * time.Second,
	}
}

// Load returns the defaults overridden by environment variables.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set(&c.DataDir, "CUSTODIA_DATA_DIR")
	set(&c.DatabaseURL, "CUSTODIA_DATABASE_URL")
	set(&c.Addr, "CUSTODIA_ADDR")
	set(&c.MasterKeyURL, "CUSTODIA_MASTER_KEY_URL")
	set(&c.TLSCert, "CUSTODIA_TLS_CERT")
	set(&c.TLSKey, "CUSTODIA_TLS_KEY")
	set(&c.LogLevel, "CUSTODIA_LOG_LEVEL")
	if v := getenv("CUSTODIA_REGIONS"); v != "" {
		for _, spec := range strings.Split(v, ",") {
			r, err := ParseRegion(spec)
			if err != nil {
				return c, err
			}
			c.Regions = append(c.Regions, r)
		}
	}
	return c, nil
}

var regionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ParseRegion parses "name=url".
func ParseRegion(spec string) (Region, error) {
	name, u, ok := strings.Cut(strings.TrimSpace(spec), "=")
	if !ok || !regionName.MatchString(name) || u == "" {
		return Region{}, fmt.Errorf("region %q: want NAME=URL with a lowercase name", spec)
	}
	if _, err := url.Parse(u); err != nil {
		return Region{}, fmt.Errorf("region %s: %w", name, err)
	}
	return Region{Name: name, URL: u}, nil
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("data dir must not be empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	c.DataDir = abs
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr %q: want host:port", c.Addr)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("give both a TLS certificate and its key, or neither")
	}
	if len(c.Regions) == 0 {
		c.Regions = []Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")}}
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if seen[r.Name] {
			return fmt.Errorf("region %s configured twice", r.Name)
		}
		seen[r.Name] = true
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// RegionNames lists the configured region names in order.
func (c *Config) RegionNames() []string {
	names := make([]string, len(c.Regions))
	for i, r := range c.Regions {
		names[i] = r.Name
	}
	return names
}
