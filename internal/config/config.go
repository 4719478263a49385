// Package config holds Custodia's configuration: one struct, filled from
// defaults, then environment variables, then command-line flags, and
// validated once before anything starts.
package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

	PublicURL      string   // CUSTODIA_PUBLIC_URL: base of links in mail and the passkey relying party; default https://Addr (localhost for a loopback Addr)
	SMTPURL        string   // CUSTODIA_SMTP_URL: smtp://user:pass@host:587; empty = mail waits in the outbox
	MailFrom       string   // CUSTODIA_MAIL_FROM
	TrustedProxies []string // CUSTODIA_TRUSTED_PROXIES ("cidr,cidr"): whose X-Forwarded-For is believed

	SMSProvider      string // CUSTODIA_SMS_PROVIDER: "" (no SMS codes), log (development), webhook
	SMSWebhookURL    string // CUSTODIA_SMS_WEBHOOK_URL
	SMSWebhookSecret string // CUSTODIA_SMS_WEBHOOK_SECRET: HMAC key for the webhook's signature

	// The audit anchor: the latest signed head of every tenant's audit
	// chain, kept outside the database (see package anchor).
	AnchorURL       string // CUSTODIA_ANCHOR_URL: file://dir or s3://bucket?…; default file://DataDir/anchor
	AnchorEachBatch bool   // CUSTODIA_ANCHOR_EACH_BATCH=true: write the anchor with every commit batch, not once a second
	Node            string // CUSTODIA_NODE: this node's name, its anchor object's name; default the host name

	// Backups (see package backup).
	BackupDir        string   // CUSTODIA_BACKUP_DIR; default DataDir/backups (a warning: the data's own disk)
	BackupRecipients []string // CUSTODIA_BACKUP_RECIPIENTS: age public keys, comma-separated; none = an identity made in DataDir
	BackupKeep       int      // CUSTODIA_BACKUP_KEEP: how many backups are kept, default 5
	OperatorEmail    string   // CUSTODIA_OPERATOR_EMAIL: who is mailed, directly over SMTP, when a backup fails
	BackupAt         string   // CUSTODIA_BACKUP_AT: the time of day (UTC, HH:MM) the daily backup is due, default 02:00
	PprofAddr        string   // CUSTODIA_PPROF_ADDR: a loopback host:port for Go's profiler; empty (the default): none

	// MinFreeMB is the free space, in MiB, below which /readyz fails for a
	// local data location (the database's folder, the data dir, file://
	// regions and anchor): CUSTODIA_MIN_FREE_MB, default 256, 0 = no floor.
	MinFreeMB int64

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
		MinFreeMB:       256,
		BackupKeep:      5,
		BackupAt:        "02:00",
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
	set(&c.PublicURL, "CUSTODIA_PUBLIC_URL")
	set(&c.SMTPURL, "CUSTODIA_SMTP_URL")
	set(&c.MailFrom, "CUSTODIA_MAIL_FROM")
	set(&c.SMSProvider, "CUSTODIA_SMS_PROVIDER")
	set(&c.SMSWebhookURL, "CUSTODIA_SMS_WEBHOOK_URL")
	set(&c.SMSWebhookSecret, "CUSTODIA_SMS_WEBHOOK_SECRET")
	set(&c.AnchorURL, "CUSTODIA_ANCHOR_URL")
	set(&c.Node, "CUSTODIA_NODE")
	set(&c.BackupDir, "CUSTODIA_BACKUP_DIR")
	set(&c.OperatorEmail, "CUSTODIA_OPERATOR_EMAIL")
	set(&c.BackupAt, "CUSTODIA_BACKUP_AT")
	set(&c.PprofAddr, "CUSTODIA_PPROF_ADDR")
	if v := getenv("CUSTODIA_BACKUP_RECIPIENTS"); v != "" {
		c.BackupRecipients = strings.Split(v, ",")
	}
	if v := getenv("CUSTODIA_BACKUP_KEEP"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("CUSTODIA_BACKUP_KEEP=%q: want how many backups to keep, 1 or more", v)
		}
		c.BackupKeep = n
	}
	switch v := getenv("CUSTODIA_ANCHOR_EACH_BATCH"); v {
	case "", "false":
	case "true":
		c.AnchorEachBatch = true
	default:
		return c, fmt.Errorf("CUSTODIA_ANCHOR_EACH_BATCH=%q: want true or false", v)
	}
	if v := getenv("CUSTODIA_MIN_FREE_MB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return c, fmt.Errorf("CUSTODIA_MIN_FREE_MB=%q: want a number of MiB, 0 or more", v)
		}
		c.MinFreeMB = n
	}
	if v := getenv("CUSTODIA_TRUSTED_PROXIES"); v != "" {
		c.TrustedProxies = strings.Split(v, ",")
	}
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

var (
	regionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	nodeName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

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
	if c.MinFreeMB < 0 {
		return fmt.Errorf("min free space %d MiB: want 0 or more", c.MinFreeMB)
	}
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
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return fmt.Errorf("pprof addr %q: want a loopback host:port, such as 127.0.0.1:6060 (the profiler is never exposed)", c.PprofAddr)
		}
	}
	if _, err := c.BackupTime(); err != nil {
		return err
	}
	if c.OperatorEmail != "" {
		if a, err := mail.ParseAddress(c.OperatorEmail); err != nil || a.Address != c.OperatorEmail {
			return fmt.Errorf("operator email %q: want a plain address, such as ops@example.org", c.OperatorEmail)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("give both a TLS certificate and its key, or neither")
	}
	if len(c.Regions) == 0 {
		c.Regions = []Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")}}
	}
	if c.AnchorURL == "" {
		c.AnchorURL = "file://" + filepath.Join(c.DataDir, "anchor")
	}
	if c.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w (set CUSTODIA_NODE)", err)
		}
		c.Node = host
	}
	if !nodeName.MatchString(c.Node) {
		return fmt.Errorf("node %q: letters, digits, '.', '_' and '-', at most 64", c.Node)
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if seen[r.Name] {
			return fmt.Errorf("region %s configured twice", r.Name)
		}
		seen[r.Name] = true
	}
	if c.PublicURL == "" {
		c.PublicURL = defaultPublicURL(c.Addr)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("public URL %q: want https://host[:port]", c.PublicURL)
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if _, err := c.Proxies(); err != nil {
		return err
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

// BackupTime is when in a day (UTC) the daily backup is due, from
// midnight.
func (c *Config) BackupTime() (time.Duration, error) {
	t, err := time.Parse("15:04", c.BackupAt)
	if err != nil {
		return 0, fmt.Errorf("backup time %q: want HH:MM, UTC, such as 02:00", c.BackupAt)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// BackupLocation is the directory backups go to: CUSTODIA_BACKUP_DIR, or
// "backups" in the data dir.
func (c *Config) BackupLocation() string {
	if c.BackupDir != "" {
		return c.BackupDir
	}
	return filepath.Join(c.DataDir, "backups")
}

// Proxies parses TrustedProxies: CIDRs, or single addresses.
func (c *Config) Proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range c.TrustedProxies {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: want an address or a CIDR", p)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an address or a CIDR", p)
		}
		out = append(out, pr.Masked())
	}
	return out, nil
}

// defaultPublicURL is https://ADDR, with "localhost" for a loopback or
// unspecified host: browsers treat localhost as a secure context and
// accept it as a passkey relying party, which they never do for an IP.
func defaultPublicURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}
