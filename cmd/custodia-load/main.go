// Command custodia-load drives a running Custodia server over HTTPS and
// prints one table: for each operation (create, read, lookup, consent,
// export of one subject, erasure, file upload and download of 64 KiB and
// 100 MiB, login) at each number of clients, how many were done, the rate,
// the latencies and the errors. It seeds what it needs first: a purpose, a
// space, and -seed contacts through the import API. Each client is an API
// client of its own, with its own connection, speaking HTTP/1.1 as wrk
// does (the tool issue 28's targets were set with), or HTTP/2 with -http2.
//
//	custodia-load -url https://127.0.0.1:8443 -token cust_… -seed 100000 -clients 1,16,64 -duration 10s
//
// scripts/loadtest.sh (make loadtest) starts a server on a fresh data dir,
// makes the tenant, user and token, and runs a short version.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "custodia-load:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	url, token, tenant, email, password string
	seed                                int
	clients                             []int
	duration                            time.Duration
	ops                                 []string
	big                                 bool
	http2                               bool
}

// allOps are the operations, in the order they run (erasure after the
// reads it would disturb).
var allOps = []string{"create", "read", "lookup", "consent", "export", "upload-64KiB", "download-64KiB",
	"upload-100MiB", "download-100MiB", "login", "erase"}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("custodia-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var clients, ops string
	fs.StringVar(&c.url, "url", "https://127.0.0.1:8443", "the server's base URL")
	fs.StringVar(&c.token, "token", os.Getenv("CUSTODIA_LOAD_TOKEN"), "an API token with every scope (CUSTODIA_LOAD_TOKEN)")
	fs.StringVar(&c.tenant, "tenant", "", "for login: the tenant's slug")
	fs.StringVar(&c.email, "email", "", "for login: a user's email")
	fs.StringVar(&c.password, "password", os.Getenv("CUSTODIA_LOAD_PASSWORD"), "for login: the user's password (CUSTODIA_LOAD_PASSWORD)")
	fs.IntVar(&c.seed, "seed", 10000, "contacts to import first (reads, lookups, exports and erasures pick among them)")
	fs.StringVar(&clients, "clients", "1,16,64", "numbers of concurrent clients, comma-separated")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each operation runs at each number of clients")
	fs.StringVar(&ops, "ops", strings.Join(allOps, ","), "operations, comma-separated")
	fs.BoolVar(&c.big, "big", true, "run the 100 MiB transfers (with one client only)")
	fs.BoolVar(&c.http2, "http2", false, "speak HTTP/2; HTTP/1.1 otherwise, as wrk (every client has a connection of its own either way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.token == "" {
		return errors.New("give -token (or CUSTODIA_LOAD_TOKEN)")
	}
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients %q: want numbers of clients, such as 1,16,64", clients)
		}
		c.clients = append(c.clients, n)
	}
	for _, op := range strings.Split(ops, ",") {
		if op = strings.TrimSpace(op); !slices.Contains(allOps, op) {
			return fmt.Errorf("-ops: %q is not one of %s", op, strings.Join(allOps, ", "))
		}
		c.ops = append(c.ops, op)
	}
	l := newLoad(c, stderr)
	if err := l.setUp(); err != nil {
		return err
	}
	var rows []result
	for _, op := range allOps {
		if !slices.Contains(c.ops, op) || (strings.HasSuffix(op, "100MiB") && !c.big) || (op == "login" && c.password == "") {
			continue
		}
		for _, n := range c.clients {
			if strings.HasSuffix(op, "100MiB") && n > 1 {
				continue
			}
			r := l.drive(op, n)
			rows = append(rows, r)
			fmt.Fprintf(stderr, "%-16s %3d clients: %7.0f/s\n", op, n, r.rate())
		}
	}
	fmt.Fprintf(stdout, "| operation | clients | done | per second | p50 ms | p99 ms | max ms | errors | rate-limited |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(stdout, "| %s | %d | %d | %.0f | %.1f | %.1f | %.1f | %d | %d |\n", r.op, r.clients, len(r.lat), r.rate(),
			r.pct(50), r.pct(99), r.pct(100), r.errors, r.limited)
	}
	return nil
}

// load is a run against one server.
type load struct {
	c      config
	http   *http.Client
	log    io.Writer
	runID  string
	ids    []string // seeded contacts
	emails []string
	space  string
	next   atomic.Int64 // a counter for names and picks
	erased atomic.Int64 // seeded contacts erased
	big    []byte
}

func newLoad(c config, log io.Writer) *load {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &load{c: c, http: newClient(c), log: log, runID: fmt.Sprintf("%x", b)}
}

// newClient returns a client with connections of its own: n clients are n
// API clients, not one multiplexing n requests over one HTTP/2 connection.
func newClient(c config) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // a load test's own server, often self-signed
		MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: c.http2}
	if !c.http2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2 offered
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}
}

// call makes one request and answers the status, reading the body into
// out when given (JSON) and discarding it otherwise.
func (l *load) call(cl *http.Client, method, path, ctype string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequest(method, l.c.url+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+l.c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if out != nil && res.StatusCode < 300 {
		return res.StatusCode, json.NewDecoder(res.Body).Decode(out)
	}
	_, err = io.Copy(io.Discard, res.Body)
	return res.StatusCode, err
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// setUp makes the purpose and the space, imports the contacts and reads
// their ids back, and uploads the files the downloads read.
func (l *load) setUp() error {
	start := time.Now()
	st, err := l.call(l.http, "POST", "/api/v1/purposes", "application/json", jsonBody(map[string]any{"key": "load.news", "name": "Load test news",
		"legal_basis": "consent", "data_categories": []string{"user.contact.email"}, "notice_text": "News, for a load test."}), nil)
	if err != nil || (st != 201 && st != 409) {
		return fmt.Errorf("create the purpose: %d %v", st, err)
	}
	var sp struct{ ID string }
	if st, err := l.call(l.http, "POST", "/api/v1/spaces", "application/json", jsonBody(map[string]any{"name": "Load " + l.runID}), &sp); err != nil || st != 201 {
		return fmt.Errorf("create the space: %d %v", st, err)
	}
	l.space = sp.ID
	for done := 0; done < l.c.seed; {
		n := min(10000, l.c.seed-done)
		var csv strings.Builder
		csv.WriteString("email,name,attributes.city\n")
		for i := range n {
			fmt.Fprintf(&csv, "seed-%s-%07d@example.org,Person %d,Ghent\n", l.runID, done+i, done+i)
		}
		if st, err := l.call(l.http, "POST", "/api/v1/subjects/import", "text/csv", strings.NewReader(csv.String()), nil); err != nil || st >= 300 {
			return fmt.Errorf("import contacts: %d %v", st, err)
		}
		done += n
		fmt.Fprintf(l.log, "seeded %d of %d contacts\n", done, l.c.seed)
	}
	for cursor := ""; ; {
		var page struct {
			Items []struct {
				ID    string `json:"id"`
				Email string `json:"email"`
			} `json:"items"`
			Next string `json:"next_cursor"`
		}
		path := "/api/v1/subjects?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if st, err := l.call(l.http, "GET", path, "", nil, &page); err != nil || st != 200 {
			return fmt.Errorf("list contacts: %d %v", st, err)
		}
		for _, it := range page.Items {
			if strings.HasPrefix(it.Email, "seed-"+l.runID+"-") {
				l.ids, l.emails = append(l.ids, it.ID), append(l.emails, it.Email)
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if len(l.ids) == 0 {
		return errors.New("no seeded contact to read: give -seed 1 or more")
	}
	small := make([]byte, 64<<10)
	_, _ = rand.Read(small)
	if st, err := l.call(l.http, "PUT", "/api/v1/spaces/"+l.space+"/files/read/64KiB.bin", "application/octet-stream", bytes.NewReader(small), nil); err != nil || st >= 300 {
		return fmt.Errorf("upload the file to read: %d %v", st, err)
	}
	if l.c.big {
		l.big = make([]byte, 100<<20)
		_, _ = rand.Read(l.big)
		if st, err := l.call(l.http, "PUT", "/api/v1/spaces/"+l.space+"/files/read/100MiB.bin", "application/octet-stream", bytes.NewReader(l.big), nil); err != nil || st >= 300 {
			return fmt.Errorf("upload the big file to read: %d %v", st, err)
		}
	}
	fmt.Fprintf(l.log, "set up in %s: %d contacts to read\n", time.Since(start).Round(time.Millisecond), len(l.ids))
	return nil
}

// Outcomes of one operation.
const (
	done    = iota
	failed  // an error, or a status not wanted
	limited // 429: the server's rate limit (sign-in attempts per address)
)

// one makes one operation and answers its outcome.
func (l *load) one(cl *http.Client, op string) int {
	n := l.next.Add(1)
	pick := int(n) % len(l.ids)
	// ok makes the request and answers whether it got one of want.
	ok := func(method, path, ctype string, body io.Reader, want ...int) int {
		st, err := l.call(cl, method, path, ctype, body, nil)
		switch {
		case err == nil && slices.Contains(want, st):
			return done
		case st == http.StatusTooManyRequests:
			return limited
		}
		return failed
	}
	switch op {
	case "create":
		return ok("POST", "/api/v1/subjects", "application/json", jsonBody(map[string]any{"email": fmt.Sprintf("new-%s-%d@example.org", l.runID, n),
			"attributes": map[string]any{"city": "Leeds"}}), 201)
	case "read":
		return ok("GET", "/api/v1/subjects/"+l.ids[pick], "", nil, 200)
	case "lookup":
		return ok("GET", "/api/v1/subjects?email="+url.QueryEscape(l.emails[pick]), "", nil, 200)
	case "consent":
		action := "grant"
		if n%2 == 0 {
			action = "withdraw"
		}
		return ok("POST", "/api/v1/subjects/"+l.ids[pick]+"/consents", "application/json",
			jsonBody(map[string]any{"purpose": "load.news", "action": action, "method": "api"}), 200, 201)
	case "export":
		return ok("GET", "/api/v1/subjects/"+l.ids[pick]+"/export", "", nil, 200)
	case "erase": // each erases another seeded contact, from the end; none left is an error
		i := len(l.ids) - int(l.erased.Add(1))
		if i < 0 {
			return failed
		}
		return ok("POST", "/api/v1/subjects/"+l.ids[i]+"/erase", "", nil, 200)
	case "upload-64KiB":
		return ok("PUT", fmt.Sprintf("/api/v1/spaces/%s/files/up/%d.bin", l.space, n), "application/octet-stream",
			io.LimitReader(rand.Reader, 64<<10), 200, 201)
	case "download-64KiB":
		return ok("GET", "/api/v1/spaces/"+l.space+"/files/read/64KiB.bin", "", nil, 200)
	case "upload-100MiB":
		return ok("PUT", fmt.Sprintf("/api/v1/spaces/%s/files/up/big-%d.bin", l.space, n), "application/octet-stream",
			bytes.NewReader(l.big), 200, 201)
	case "download-100MiB":
		return ok("GET", "/api/v1/spaces/"+l.space+"/files/read/100MiB.bin", "", nil, 200)
	case "login":
		req, _ := http.NewRequest("POST", l.c.url+"/api/v1/auth/login", jsonBody(map[string]any{"tenant": l.c.tenant, "email": l.c.email, "password": l.c.password}))
		req.Header.Set("Content-Type", "application/json")
		res, err := cl.Do(req)
		if err != nil {
			return failed
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			return done
		case http.StatusTooManyRequests:
			return limited
		}
		return failed
	}
	return failed
}

// result is one operation at one number of clients.
type result struct {
	op      string
	clients int
	elapsed time.Duration
	lat     []time.Duration // sorted
	errors  int
	limited int // answered 429 by the server's rate limit
}

func (r result) rate() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

// pct answers the p-th percentile latency in ms (100: the longest).
func (r result) pct(p int) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	i := min(len(r.lat)-1, len(r.lat)*p/100)
	return float64(r.lat[i].Microseconds()) / 1000
}

// drive runs op from n clients for the configured duration.
func (l *load) drive(op string, n int) result {
	r := result{op: op, clients: n}
	var mu sync.Mutex
	var errs, refused atomic.Int64
	deadline := time.Now().Add(l.c.duration)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			cl := newClient(l.c)
			defer cl.CloseIdleConnections()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				switch l.one(cl, op) {
				case done:
					mine = append(mine, time.Since(t))
				case limited:
					refused.Add(1)
				default:
					errs.Add(1)
				}
			}
			mu.Lock()
			r.lat = append(r.lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.errors, r.limited = int(errs.Load()), int(refused.Load())
	slices.Sort(r.lat)
	return r
}
