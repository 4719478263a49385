// Package browsertest drives the HTML pages Custodia serves in a real
// headless Chromium (package chrometest): what a person sees, how it
// behaves, and whether it meets WCAG 2.1 AA. Its tests run without -race,
// in their own go test (scripts/test.sh).
package browsertest
