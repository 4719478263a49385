// Package blobtest starts a real S3-compatible server (versitygw, built by
// scripts/test.sh into the user's cache directory and named by
// CUSTODIA_VERSITYGW) for tests of the S3 driver and of what is built on it.
package blobtest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// StartS3 starts versitygw on a temporary directory with one bucket and
// answers its s3:// URL. Without the binary the test is skipped loudly —
// and fails under CI, where scripts/test.sh builds it.
func StartS3(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CUSTODIA_VERSITYGW")
	if bin == "" { // go test run by hand: the newest one scripts/test.sh built
		if dir, err := os.UserCacheDir(); err == nil {
			found, _ := filepath.Glob(filepath.Join(dir, "custodia", "tools", "versitygw@*", "versitygw"))
			if len(found) > 0 {
				bin = found[len(found)-1]
			}
		}
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("versitygw is required under CI (scripts/test.sh builds it): %v", err)
		}
		t.Skip("*** SKIPPED: no versitygw at " + bin + "; run make test (it builds it) to test the S3 driver ***")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--port", addr, "posix", t.TempDir())
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=test", "ROOT_SECRET_KEY=testsecret123")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not start: %s", logs.String())
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testsecret123")
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("test", "testsecret123", "")})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("custodia-test")}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return "s3://custodia-test?endpoint=http://" + addr + "&region=us-east-1&use_path_style=true"
}
