// Package app builds Custodia from a config.Config: it opens the master key
// and the database, migrates, wires the domain services and the API, and
// serves HTTPS until its context ends.
//
// Dependencies point one way:
//
//	cmd → app → api → domain packages (tenant, identity, subject, …)
//	            → platform packages (audit, keyring, mail, sqldb, httpio, errs, config)
//
// A domain package never imports net/http, api or app; a platform package
// never imports a domain package. TestDependencyDirection checks this with
// `go list -deps`.
package app
