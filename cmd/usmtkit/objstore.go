package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/verify"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

// objConfig is where s3:// names are looked up: the global --endpoint
// flag, else AWS_ENDPOINT_URL (docs/object-storage.md).
var objConfig objstore.Config

// objReaderOptions lets tests shorten the per-GET timeout.
var objReaderOptions objstore.ReaderOptions

// objClients keeps one client per configuration for the process, shared
// (objstore.Client.Share): a command over many archives (info PREFIX,
// verify over many stores) then reuses its connections from one archive
// to the next instead of opening new ones (a TCP connect and, for https, a
// TLS handshake per archive). The key holds everything the client's
// configuration and credentials are read from, so a changed environment
// (tests run many commands in one process) gets a client of its own.
var objClients struct {
	mu sync.Mutex
	m  map[string]*objstore.Client
}

// objEnv is what objstore.NewClient and minio-go's credential chain read.
var objEnv = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "HOME"}

// objClient returns the process's client for the current configuration.
func objClient() (*objstore.Client, error) {
	key := fmt.Sprintf("%+v", objConfig)
	for _, v := range objEnv {
		key += "\x00" + os.Getenv(v)
	}
	objClients.mu.Lock()
	defer objClients.mu.Unlock()
	if c, ok := objClients.m[key]; ok {
		return c, nil
	}
	c, err := objstore.NewClient(objConfig)
	if err != nil {
		return nil, err
	}
	c.Share()
	if objClients.m == nil {
		objClients.m = map[string]*objstore.Client{}
	}
	objClients.m[key] = c
	return c, nil
}

// openObject opens s3://BUCKET/KEY as a Reader.
func openObject(ctx context.Context, name string) (*objstore.Reader, error) {
	loc, err := objstore.ParseURL(name)
	if err != nil {
		return nil, err
	}
	c, err := objClient()
	if err != nil {
		return nil, err
	}
	return c.Open(ctx, loc, objReaderOptions)
}

// openObjectArchive opens an archive in a bucket as a store.
func openObjectArchive(name string, opts compress.ReaderOptions) (*compress.Archive, error) {
	r, err := openObject(context.Background(), name)
	if err != nil {
		return nil, fmt.Errorf("opening archive %w", err)
	}
	a, err := compress.OpenReaderAt(r, r.Size(), name, r.Close, opts)
	if err != nil {
		r.Close()
		return nil, err
	}
	return a, nil
}

// objectDetection stands for an archive in a bucket among the detected
// stores; it is opened (and so checked) when the command opens it.
func objectDetection(name string) *store.Detection {
	return store.OpenerDetection(store.KindArchive, name, func(name string) (store.Store, error) {
		return openObjectArchive(name, compress.ReaderOptions{})
	})
}

// createObjectArchive writes src as an archive straight into a multipart
// upload of s3://BUCKET/KEY: compress.Write streams into a pipe whose
// other end feeds the upload, so no local copy is made. Any failure, or
// an interrupt, aborts the upload: no object appears under the key.
func createObjectArchive(ctx context.Context, name string, src store.Store, opts compress.WriteOptions, force bool) (*compress.WriteResult, error) {
	loc, err := objstore.ParseURL(name)
	if err != nil {
		return nil, exitcodes.Usagef(err.Error())
	}
	if strings.HasSuffix(loc.Key, "/") {
		return nil, exitcodes.Usagef(fmt.Sprintf("%s ends in /: give the object's full key, e.g. %sstore.tar.zst", name, name))
	}
	c, err := objClient()
	if err != nil {
		return nil, err
	}
	up, err := c.Create(ctx, loc, force)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		up.Abort()
		return nil, err
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(up, pr)
		if err != nil {
			pr.Close() // the writer gets EPIPE instead of blocking
		}
		copied <- err
	}()
	res, err := compress.Write(ctx, pw, src, opts)
	if err != nil {
		up.Abort() // first: the pipe's end must not complete the upload
		pw.Close()
		cerr := <-copied
		pr.Close()
		if cerr != nil && !errors.Is(cerr, objstore.ErrAborted) {
			return nil, cerr // the upload failed first: say why, not "broken pipe"
		}
		return nil, err
	}
	pw.Close()
	if err := <-copied; err != nil {
		up.Abort()
		pr.Close()
		return nil, err
	}
	pr.Close()
	if err := up.Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// runVerifySalvage checks an archive whose index is damaged by the salvage
// walk, reading it from disk or, for s3://BUCKET/KEY, by ranged GETs.
func runVerifySalvage(ctx context.Context, archive string, indexErr error, vo verify.Options, emit func(*verify.Result) error) (*verify.Summary, error) {
	if !objstore.IsURL(archive) {
		return verify.RunSalvage(ctx, archive, indexErr, vo, emit)
	}
	r, err := openObject(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("verifying archive %w", err)
	}
	defer r.Close()
	return verify.RunSalvageReaderAt(ctx, r, r.Size(), archive, indexErr, vo, emit)
}
