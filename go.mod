module github.com/lightsse/sse

go 1.25
