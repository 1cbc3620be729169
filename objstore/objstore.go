// Package objstore reaches archives in S3-compatible object storage
// (docs/object-storage.md): s3://BUCKET/KEY names, credentials from the
// standard AWS environment variables and shared files, and a Reader that
// presents an object as an io.ReaderAt with a size, backed by ranged GETs,
// a bounded block cache and bounded read-ahead for sequential readers.
//
// The client library is minio-go: one module with few dependencies, a
// credential chain that reads the AWS variables and shared files, and
// plain ranged GETs; the AWS SDK v2 would bring a dozen modules for the
// same three calls. Only this package and cmd/usmtkit import it
// (internal/archtest).
package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/usmtkit/usmtkit/store"
)

// Scheme is the prefix of an object's name on the command line.
const Scheme = "s3://"

// IsURL reports whether name names an object (s3://BUCKET/KEY).
func IsURL(name string) bool { return strings.HasPrefix(name, Scheme) }

// ErrNotFound wraps a missing bucket or key; it is store.ErrNoStore for
// errors.Is, so the command line exits with the no-store code.
var ErrNotFound error = notFound{}

type notFound struct{}

func (notFound) Error() string        { return "not found" }
func (notFound) Is(target error) bool { return target == store.ErrNoStore }

// errNoBucket marks a missing bucket among not-found errors.
var errNoBucket error = noBucket{}

type noBucket struct{}

func (noBucket) Error() string { return "not found" }
func (noBucket) Is(target error) bool {
	return target == store.ErrNoStore || target == ErrNotFound
}

func bucketMissing(err error) bool { return errors.Is(err, errNoBucket) }

// ErrUnavailable wraps a request the server did not answer in time (it
// is down, unreachable or stuck). It deliberately does not wrap
// context.DeadlineExceeded: a mount turns that into EIO, not EINTR.
var ErrUnavailable = errors.New("no answer from the server")

// ErrAccess wraps refused credentials.
var ErrAccess = errors.New("access refused")

// Location is a parsed s3://BUCKET/KEY.
type Location struct {
	Bucket, Key string
}

func (l Location) String() string { return Scheme + l.Bucket + "/" + l.Key }

// splitURL splits s3://BUCKET/KEY (name starts with Scheme).
func splitURL(name string) (bucket, key string) {
	bucket, key, _ = strings.Cut(strings.TrimPrefix(name, Scheme), "/")
	return bucket, key
}

// IsPrefix reports whether name is an s3:// name of a prefix rather than
// of one object: s3://BUCKET, s3://BUCKET/ or a key that ends in /.
func IsPrefix(name string) bool {
	if !IsURL(name) {
		return false
	}
	_, key := splitURL(name)
	return key == "" || strings.HasSuffix(key, "/")
}

// ParsePrefix parses s3://BUCKET/PREFIX/ (or s3://BUCKET/, the whole
// bucket): Key is the prefix, "" or ending in /.
func ParsePrefix(name string) (Location, error) {
	if !IsPrefix(name) {
		return Location{}, fmt.Errorf("%q is not an s3://BUCKET/PREFIX/ name (a prefix ends in /)", name)
	}
	bucket, key := splitURL(name)
	if bucket == "" {
		return Location{}, fmt.Errorf("%q needs a bucket: s3://BUCKET/PREFIX/", name)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// ParseURL parses s3://BUCKET/KEY; KEY may end in / (a prefix).
func ParseURL(name string) (Location, error) {
	if !IsURL(name) {
		return Location{}, fmt.Errorf("%q is not an s3://BUCKET/KEY name", name)
	}
	bucket, key := splitURL(name)
	if bucket == "" || key == "" {
		return Location{}, fmt.Errorf("%q needs a bucket and a key: s3://BUCKET/KEY", name)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// Config says where the server is. Zero values come from the environment.
type Config struct {
	// Endpoint is the server's URL (http://host:port or https://host);
	// empty means AWS_ENDPOINT_URL, then AWS S3 itself.
	Endpoint string
	// Region; empty means AWS_REGION, then AWS_DEFAULT_REGION, then the
	// shared config file's region for the profile (sharedConfigRegion).
	Region string
	// CABundle is a PEM file of extra certificate authorities trusted for
	// an https endpoint (a site's own CA); empty means AWS_CA_BUNDLE.
	CABundle string
	// InsecureSkipVerify turns off the check of an https endpoint's
	// certificate (--no-verify-tls): only ever on the user's word.
	InsecureSkipVerify bool
}

// Client is a connection to one server.
type Client struct {
	mc        *minio.Client
	region    string
	transport http.RoundTripper
	shared    atomic.Bool // Share: readers and uploads leave idle connections open
}

// NewClient makes a client. Credentials come, in order, from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN), the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
// profile AWS_PROFILE) and the instance metadata service. TLS
// certificates of https endpoints are verified against the system's
// authorities and the CA bundle, unless cfg.InsecureSkipVerify.
func NewClient(cfg Config) (*Client, error) {
	ep := cfg.Endpoint
	if ep == "" {
		ep = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if ep == "" {
		ep = os.Getenv("AWS_ENDPOINT_URL")
	}
	if ep == "" {
		ep = "https://s3.amazonaws.com"
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("the endpoint %q is not an http:// or https:// URL", ep)
	}
	region := cfg.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = sharedConfigRegion()
	}
	if region == "" {
		region = "us-east-1"
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport}},
	})
	ca := cfg.CABundle
	if ca == "" {
		ca = os.Getenv("AWS_CA_BUNDLE")
	}
	transport, err := newTransport(u.Scheme == "https", ca, cfg.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	mc, err := minio.New(u.Host, &minio.Options{
		Transport: transport,
		Creds:     creds,
		// Parts carry a CRC32C trailer instead of a signed SHA-256 of
		// the payload (upload.go).
		TrailingHeaders: true,
		Secure:          u.Scheme == "https",
		Region:          region,
		BucketLookup:    minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", ep, err)
	}
	return &Client{mc: mc, region: region, transport: transport}, nil
}

// closeIdle closes the client's idle connections when a reader closes or
// an upload ends, unless the client is shared. A client made for one
// archive would otherwise keep its connections open (a descriptor here
// and one on the server) for the transport's idle timeout of a minute:
// one per archive over a run of many, measured.
func (c *Client) closeIdle() {
	if c.shared.Load() {
		return
	}
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Share marks the client as used for many archives one after another:
// closing a reader or ending an upload leaves its connections open for
// the next archive (no new connect, no new TLS handshake), at most 16
// idle ones (minio-go's transport).
func (c *Client) Share() { c.shared.Store(true) }

// Region is the region the client signs its requests for.
func (c *Client) Region() string { return c.region }

// classify turns a server's answer into one clear error.
func classify(loc Location, err error) error {
	if err == nil {
		return nil
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("%s: %w (if the server's certificate is from your own authority, trust it with AWS_CA_BUNDLE=ca.pem)", loc, err)
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return fmt.Errorf("%s: the server's certificate was refused: %v (--endpoint must name a host the certificate is for)", loc, cv.Err)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchBucket":
		return fmt.Errorf("%s: the bucket %s does not exist: %w", loc, loc.Bucket, errNoBucket)
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%s: no such object: %w", loc, ErrNotFound)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%s: the server refused the credentials (%s): %w", loc, resp.Code, ErrAccess)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%s: no such bucket or object: %w", loc, ErrNotFound)
	case http.StatusForbidden:
		return fmt.Errorf("%s: the server refused the credentials: %w", loc, ErrAccess)
	}
	return fmt.Errorf("%s: %w", loc, err)
}

// certAbortKey holds, in a request's context, the function that ends that
// context when the server's certificate is refused (countingTransport).
// minio-go retries every error it does not list (it lists an unknown
// authority, not a wrong host name or an expired certificate) ten times
// over about 9 s; retrying cannot change a certificate.
type certAbortKey struct{}

// withCertAbort is ctx, ended at once by a refused certificate. The
// first request of every command (Stat, Open) goes through it.
func withCertAbort(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, certAbortKey{}, cancel), cancel
}

// certRefused is the certificate error that ended ctx, or nil.
func certRefused(ctx context.Context) error {
	var cv *tls.CertificateVerificationError
	if c := context.Cause(ctx); errors.As(c, &cv) {
		return cv
	}
	return nil
}

// Stat returns the object's size.
func (c *Client) Stat(ctx context.Context, loc Location) (int64, error) {
	ctx, cancel := withCertAbort(ctx)
	defer cancel(nil)
	oi, err := c.mc.StatObject(ctx, loc.Bucket, loc.Key, minio.StatObjectOptions{})
	if cerr := certRefused(ctx); cerr != nil {
		return 0, classify(loc, cerr)
	}
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket" {
			// HEAD carries no error body: tell a missing bucket from a
			// missing key with one more request.
			if ok, berr := c.mc.BucketExists(ctx, loc.Bucket); berr == nil && !ok {
				return 0, fmt.Errorf("%s: the bucket %s does not exist: %w", loc, loc.Bucket, errNoBucket)
			}
		}
		return 0, classify(loc, err)
	}
	return oi.Size, nil
}

// prefixHint is err, the error of opening loc, with a hint when loc's key
// is missing but names a prefix without its final / (one list request,
// only on that error path).
func (c *Client) prefixHint(ctx context.Context, loc Location, err error) error {
	if !errors.Is(err, ErrNotFound) || bucketMissing(err) || strings.HasSuffix(loc.Key, "/") {
		return err
	}
	for oi := range c.mc.ListObjectsIter(ctx, loc.Bucket, minio.ListObjectsOptions{Prefix: loc.Key + "/", Recursive: true, MaxKeys: 1}) {
		if oi.Err == nil {
			return fmt.Errorf("%s: no such object, but %s/ is a prefix with objects under it (end the name with / to name every archive under it): %w", loc, loc, ErrNotFound)
		}
		break
	}
	return err
}

// Object is one object found under a prefix.
type Object struct {
	Location
	Size     int64
	Modified time.Time
}

// List calls fn for every object whose key starts with prefix.Key, at
// any depth below it, in key order: one ListObjectsV2 request per 1000
// objects, nothing kept here (a prefix may hold millions). A missing
// bucket, refused credentials and an unreachable server are errors, as
// for Stat; a prefix with no object under it calls fn for none.
func (c *Client) List(ctx context.Context, prefix Location, fn func(Object)) error {
	ctx, cancel := withCertAbort(ctx)
	defer cancel(nil)
	for oi := range c.mc.ListObjectsIter(ctx, prefix.Bucket, minio.ListObjectsOptions{Prefix: prefix.Key, Recursive: true}) {
		if cerr := certRefused(ctx); cerr != nil {
			return classify(prefix, cerr)
		}
		if oi.Err != nil {
			return classify(prefix, oi.Err)
		}
		fn(Object{Location: Location{Bucket: prefix.Bucket, Key: oi.Key}, Size: oi.Size, Modified: oi.LastModified})
	}
	if cerr := certRefused(ctx); cerr != nil {
		return classify(prefix, cerr)
	}
	return nil
}

// EnsureBucket creates the bucket unless it exists (tests, benchmarks).
func (c *Client) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := c.mc.BucketExists(ctx, bucket)
	if err == nil && !ok {
		err = c.mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	}
	if err != nil {
		return classify(Location{Bucket: bucket, Key: ""}, err)
	}
	return nil
}

// Exists reports whether the object is there.
func (c *Client) Exists(ctx context.Context, loc Location) (bool, error) {
	_, err := c.Stat(ctx, loc)
	if errors.Is(err, ErrNotFound) && !bucketMissing(err) {
		return false, nil
	}
	return err == nil, err
}

// IncompleteUploads counts the multipart uploads under loc's key that were
// neither completed nor aborted (what a crash leaves).
func (c *Client) IncompleteUploads(ctx context.Context, loc Location) (int, error) {
	n := 0
	for u := range c.mc.ListIncompleteUploads(ctx, loc.Bucket, loc.Key, false) {
		if u.Err != nil {
			return n, classify(loc, u.Err)
		}
		if u.Key == loc.Key {
			n++
		}
	}
	return n, nil
}
