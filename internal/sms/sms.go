// Package sms sends text messages (second-factor codes) through a provider
// the operator chooses: an HTTP webhook that their SMS gateway (or a small
// adapter in front of one) receives, or — for development only — the log.
//
// The webhook gets a JSON body {"to", "text"} signed with HMAC-SHA256 under
// a shared secret: headers X-Custodia-Timestamp (Unix seconds) and
// X-Custodia-Signature ("sha256=" + hex of the MAC over timestamp + "." +
// body), so the receiver can refuse forgeries and replays.
package sms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message is one text message.
type Message struct {
	To   string `json:"to"` // E.164
	Text string `json:"text"`
}

// Sender delivers messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Config chooses the provider: "" (none: SMS codes are unavailable), "log"
// or "webhook" (with URL and Secret).
type Config struct {
	Provider string
	URL      string
	Secret   string
}

// New returns the configured sender, or nil when there is none.
func New(c Config, logger *slog.Logger, client *http.Client) (Sender, error) {
	switch c.Provider {
	case "":
		return nil, nil
	case "log":
		return logSender{logger}, nil
	case "webhook":
		u, err := url.Parse(c.URL)
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("--sms-webhook-url: want an http(s) URL")
		}
		if len(c.Secret) < 32 {
			return nil, fmt.Errorf("--sms-webhook-secret: want at least 32 characters")
		}
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		return &Webhook{url: c.URL, secret: []byte(c.Secret), client: client, now: time.Now}, nil
	default:
		return nil, fmt.Errorf("--sms-provider %q: want log or webhook", c.Provider)
	}
}

// logSender writes messages to the log, with all but the last two digits
// of the number masked. For development: the text (the code) is in clear.
type logSender struct{ logger *slog.Logger }

func (l logSender) Send(ctx context.Context, m Message) error {
	masked := "…"
	if len(m.To) > 2 {
		masked += m.To[len(m.To)-2:]
	}
	l.logger.InfoContext(ctx, "sms (log provider: development only)", "to", masked, "text", m.Text)
	return nil
}

// Webhook posts messages to an HTTP endpoint.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// Sign returns the signature header value for body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Send posts m and succeeds on a 2xx answer.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custodia-Timestamp", ts)
	req.Header.Set("X-Custodia-Signature", Sign(w.secret, ts, body))
	res, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("sms webhook: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	if res.StatusCode/100 != 2 {
		// The status only: the body may echo the number.
		return fmt.Errorf("sms webhook answered %d", res.StatusCode)
	}
	return nil
}
