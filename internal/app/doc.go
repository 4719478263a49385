// Package app builds Custodia from a config.Config: it opens the core (the
// master key, the database, migrated, and the domain services wired by
// package core), builds the API over it, and serves HTTPS until its context
// ends.
//
// Dependencies point one way:
//
//	cmd → app → api  → domain packages (tenant, identity, subject, …)
//	          → core → domain packages
//	                   → platform packages (audit, keyring, mail, sqldb, httpio, errs, config, …)
//
// A domain package never imports net/http, api or app; core never depends
// on the HTTP layers either; a platform package never imports a domain
// package. TestDependencyDirection checks this with `go list -deps` over
// every package under internal/, each of which must be placed in a layer
// there. TestDomainTestsStayOffHTTP keeps the tests of domain packages off
// the HTTP layers too: they build on core (coretest), not on the app.
package app
