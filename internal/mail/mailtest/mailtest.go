// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp)
// in-process for tests, and lets them wait for the mail it received.
package mailtest

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one received message, decoded.
type Mail struct {
	From    string
	To      []string
	Subject string
	Text    string
	Raw     []byte
}

// Server is a running SMTP server.
type Server struct {
	URL string // smtp://…?tls=none, for mail.Config

	mu    sync.Mutex
	mails []Mail
	added chan struct{}
	// Refuse, when set, makes RCPT fail with this SMTP code (e.g. 550).
	refuse int
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{added: make(chan struct{}, 1)}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.URL = "smtp://" + ln.Addr().String() + "?tls=none"
	return s
}

// Refuse makes the server reject recipients with code from now on (0: accept).
func (s *Server) Refuse(code int) {
	s.mu.Lock()
	s.refuse = code
	s.mu.Unlock()
}

// All returns every mail received so far.
func (s *Server) All() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// To returns the mails received so far for to whose subject contains
// subject, oldest first.
func (s *Server) To(to, subject string) []Mail {
	var out []Mail
	for _, m := range s.All() {
		if slices.ContainsFunc(m.To, func(r string) bool { return strings.EqualFold(r, to) }) && strings.Contains(m.Subject, subject) {
			out = append(out, m)
		}
	}
	return out
}

// Wait returns the newest mail to `to` whose subject contains subject,
// waiting for the first one and failing the test after timeout.
func (s *Server) Wait(t testing.TB, to, subject string, timeout time.Duration) Mail {
	t.Helper()
	ms := s.WaitCount(t, to, subject, 1, timeout)
	return ms[len(ms)-1]
}

// WaitCount waits until at least n mails to `to` whose subject contains
// subject arrived, and returns them, failing the test after timeout.
func (s *Server) WaitCount(t testing.TB, to, subject string, n int, timeout time.Duration) []Mail {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if ms := s.To(to, subject); len(ms) >= n {
			return ms
		}
		select {
		case <-s.added:
		case <-deadline:
			t.Fatalf("%d mails to %s about %q within %s; want %d (%d mails in all)", len(s.To(to, subject)), to, subject, timeout, n, len(s.All()))
		}
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	code := x.s.refuse
	x.s.mu.Unlock()
	if code != 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Mail{From: x.from, To: x.to, Raw: raw}
	if msg, err := netmail.ReadMessage(bytes.NewReader(raw)); err == nil {
		dec := new(mime.WordDecoder)
		if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
			m.Subject = subj
		}
		body, _ := io.ReadAll(msg.Body)
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		}
		m.Text = string(body)
	}
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, m)
	x.s.mu.Unlock()
	select {
	case x.s.added <- struct{}{}:
	default:
	}
	return nil
}
