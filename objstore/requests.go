package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
)

// Request counting: every HTTP request the client sends (retries
// included) is counted by method, and the response bytes received, so
// scripts/bench/s3.sh and a technician on a metered link can see what a
// command cost (USMTKIT_S3_REQUESTS, docs/object-storage.md). The counts
// are for the whole process.

// RequestCounts is a snapshot of the requests sent so far.
type RequestCounts struct {
	HEAD, GET, PUT, POST, DELETE, Other int64
	// BytesIn is response body bytes received (GET data, XML answers).
	BytesIn int64
	// BytesOut is request body bytes sent (uploaded parts).
	BytesOut int64
	// Conns is the connections opened to the server (each a TCP connect,
	// and a TLS handshake for https): reused connections cost neither.
	Conns int64
}

func (c RequestCounts) String() string {
	return fmt.Sprintf("%d HEAD, %d GET, %d PUT, %d POST, %d DELETE, %d other; %d bytes received, %d sent; %d connections opened",
		c.HEAD, c.GET, c.PUT, c.POST, c.DELETE, c.Other, c.BytesIn, c.BytesOut, c.Conns)
}

// Total is the number of requests of any method.
func (c RequestCounts) Total() int64 {
	return c.HEAD + c.GET + c.PUT + c.POST + c.DELETE + c.Other
}

var counters struct {
	head, get, put, post, del, other atomic.Int64
	in, out                          atomic.Int64
	conns                            atomic.Int64
}

// Requests returns the requests sent by every client of this process.
func Requests() RequestCounts {
	return RequestCounts{
		HEAD: counters.head.Load(), GET: counters.get.Load(), PUT: counters.put.Load(),
		POST: counters.post.Load(), DELETE: counters.del.Load(), Other: counters.other.Load(),
		BytesIn: counters.in.Load(), BytesOut: counters.out.Load(), Conns: counters.conns.Load(),
	}
}

// Since is what was sent between before and c.
func (c RequestCounts) Since(before RequestCounts) RequestCounts {
	return RequestCounts{
		HEAD: c.HEAD - before.HEAD, GET: c.GET - before.GET, PUT: c.PUT - before.PUT,
		POST: c.POST - before.POST, DELETE: c.DELETE - before.DELETE, Other: c.Other - before.Other,
		BytesIn: c.BytesIn - before.BytesIn, BytesOut: c.BytesOut - before.BytesOut, Conns: c.Conns - before.Conns,
	}
}

// countingTransport counts each request and the bytes of its bodies.
type countingTransport struct{ next http.RoundTripper }

// newTransport is minio-go's transport (TLS 1.2 or later, the system's
// authorities) with the CA bundle's authorities added, certificate checks
// off only when asked, and every request counted.
func newTransport(secure bool, caBundle string, insecure bool) (http.RoundTripper, error) {
	t, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			counters.conns.Add(1)
		}
		return c, err
	}
	if secure && caBundle != "" {
		pem, err := os.ReadFile(caBundle)
		if err != nil {
			return nil, fmt.Errorf("reading the CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA bundle %s holds no PEM certificate", caBundle)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	if secure && insecure {
		t.TLSClientConfig.InsecureSkipVerify = true
	}
	return countingTransport{next: t}, nil
}

// CloseIdleConnections closes the idle connections of the transport
// below (Client.closeIdle).
func (t countingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodHead:
		counters.head.Add(1)
	case http.MethodGet:
		counters.get.Add(1)
	case http.MethodPut:
		counters.put.Add(1)
	case http.MethodPost:
		counters.post.Add(1)
	case http.MethodDelete:
		counters.del.Add(1)
	default:
		counters.other.Add(1)
	}
	if req.ContentLength > 0 {
		counters.out.Add(req.ContentLength)
	}
	resp, err := t.next.RoundTrip(req)
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		// A refused certificate ends the request's context when it was
		// made by withCertAbort (the first request of a command), so
		// minio-go stops retrying what a retry cannot change.
		if abort, ok := req.Context().Value(certAbortKey{}).(context.CancelCauseFunc); ok {
			abort(cv)
		}
		var ua x509.UnknownAuthorityError
		if errors.As(cv.Err, &ua) {
			// minio-go does not retry x509.UnknownAuthorityError itself,
			// but Go wraps it in a tls.CertificateVerificationError.
			return nil, ua
		}
	}
	if resp != nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body}
	}
	return resp, err
}

type countingBody struct{ io.ReadCloser }

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	counters.in.Add(int64(n))
	return n, err
}
