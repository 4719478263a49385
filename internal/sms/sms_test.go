package sms_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/sms"
)

const secret = "0123456789abcdef0123456789abcdef"

func TestWebhookSignsAndReportsFailures(t *testing.T) {
	var got []sms.Message
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Custodia-Timestamp")
		if r.Header.Get("X-Custodia-Signature") != sms.Sign([]byte(secret), ts, body) || ts == "" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m sms.Message
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		got = append(got, m)
		w.WriteHeader(status)
	}))
	defer srv.Close()

	s, err := sms.New(sms.Config{Provider: "webhook", URL: srv.URL, Secret: secret}, nil, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), sms.Message{To: "+447700900123", Text: "code 123456"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].To != "+447700900123" || got[0].Text != "code 123456" {
		t.Fatalf("received %+v", got)
	}
	status = http.StatusBadGateway
	if err := s.Send(context.Background(), sms.Message{To: "+447700900123", Text: "x"}); err == nil || strings.Contains(err.Error(), "447700") {
		t.Errorf("gateway failure: %v", err)
	}
	// A wrong secret is refused by the receiver.
	forged, err := sms.New(sms.Config{Provider: "webhook", URL: srv.URL, Secret: strings.Repeat("x", 32)}, nil, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := forged.Send(context.Background(), sms.Message{To: "+1", Text: "x"}); err == nil {
		t.Error("the receiver accepted a message signed with another secret")
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []sms.Config{
		{Provider: "pigeon"},
		{Provider: "webhook", URL: "ftp://x", Secret: secret},
		{Provider: "webhook", URL: "https://sms.example", Secret: "short"},
	} {
		if _, err := sms.New(c, nil, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if s, err := sms.New(sms.Config{}, nil, nil); s != nil || err != nil {
		t.Errorf("no provider: %v %v", s, err)
	}
	var buf strings.Builder
	s, err := sms.New(sms.Config{Provider: "log"}, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), sms.Message{To: "+447700900123", Text: "code 1"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "4477009001") || !strings.Contains(buf.String(), "…23") {
		t.Errorf("log provider shows the number: %s", buf.String())
	}
}
