module github.com/lightsse/sse/redisstream

go 1.25

require (
	github.com/lightsse/sse v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)

// The root module is this repository's parent folder: the package it
// adapts, and its test helpers, always at this commit.
replace github.com/lightsse/sse => ../
