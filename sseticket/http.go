package sseticket

import (
	"net/http"
)

// DefaultParam is the query parameter a ticket travels in unless
// Signer.Param names another.
const DefaultParam = "ticket"

// param returns the name of the ticket's query parameter.
func (s *Signer) param() string {
	if s.Param == "" {
		return DefaultParam
	}
	return s.Param
}

// Check verifies the ticket in r's query (in the parameter that Param
// names) for scope, as Verify does, and returns Verify's error; ErrMissing
// if the query has no ticket, and ErrInvalid if it has more than one (which
// of them a proxy, a log or the next handler would read is anyone's guess).
func (s *Signer) Check(r *http.Request, scope string) error {
	tickets := r.URL.Query()[s.param()]
	switch len(tickets) {
	case 0:
		return ErrMissing
	case 1:
		return s.Verify(tickets[0], scope)
	default:
		return ErrInvalid
	}
}

// Require returns a handler that checks each request's ticket for the scope
// that scopeOf returns for the request, with Check, and passes the request
// on to next only if it opens it. Otherwise it answers 403 Forbidden, with
// the body "Forbidden" as text/plain, and nothing else: next does not run,
// so no event-stream header and no byte of the stream goes out, and the
// answer is the same whatever the reason. (Headers that a handler before it
// set stay, CORS ones say, that the browser may read the 403.)
//
// It serves any handler: a run's stream (scopeOf returns "run:" and the
// run's id), a user's (scopeOf returns "user:" and the user's id, and the
// user's own server signs the ticket after its session check), or
// something else than a stream. scopeOf runs before the check, on every
// request; an empty scope opens nothing.
func (s *Signer) Require(scopeOf func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Check(r, scopeOf(r)); err != nil {
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
