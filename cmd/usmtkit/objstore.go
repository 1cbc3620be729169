package main

import (
	"context"
	"fmt"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

// objConfig is where s3:// names are looked up: the global --endpoint
// flag, else AWS_ENDPOINT_URL (docs/object-storage.md).
var objConfig objstore.Config

// objReaderOptions lets tests shorten the per-GET timeout.
var objReaderOptions objstore.ReaderOptions

// openObject opens s3://BUCKET/KEY as a Reader.
func openObject(ctx context.Context, name string) (*objstore.Reader, error) {
	loc, err := objstore.ParseURL(name)
	if err != nil {
		return nil, err
	}
	c, err := objstore.NewClient(objConfig)
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
