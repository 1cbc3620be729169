package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
)

// PartSize is the multipart part size: memory held by an upload is about
// PartSize × UploadThreads; 10 000 parts of 16 MiB allow 156 GiB objects.
const (
	PartSize      = 16 << 20
	UploadThreads = 4
)

// ErrAborted is what an aborted upload's server-side read sees.
var ErrAborted = errors.New("upload aborted")

// Upload streams an object as a multipart upload while it is written: an
// io.WriteCloser whose Close completes the upload and whose Abort (or a
// failed Write, or a process that dies) leaves no object under the key.
// Parts not yet completed are removed by the abort; after a crash they
// stay as an incomplete upload until a bucket lifecycle rule (or
// AbortIncompleteMultipartUpload) removes them (docs/object-storage.md).
type Upload struct {
	loc     Location
	pw      *io.PipeWriter
	done    chan struct{}
	err     error
	size    int64
	written atomic.Int64
	cancel  context.CancelFunc
	c       *Client
}

// Create starts an upload of loc. With replace false an existing object
// is refused (checked once, before the upload starts).
func (c *Client) Create(ctx context.Context, loc Location, replace bool) (*Upload, error) {
	if _, err := c.Stat(ctx, loc); err == nil {
		if !replace {
			return nil, fmt.Errorf("%s already exists: choose another key or pass --force to replace it", loc)
		}
	} else if !errors.Is(err, ErrNotFound) || bucketMissing(err) {
		return nil, err
	}
	pr, pw := io.Pipe()
	uctx, cancel := context.WithCancel(ctx)
	u := &Upload{loc: loc, pw: pw, done: make(chan struct{}), cancel: cancel, c: c}
	go func() {
		defer close(u.done)
		info, err := c.mc.PutObject(uctx, loc.Bucket, loc.Key, pr, -1, minio.PutObjectOptions{
			PartSize: PartSize, NumThreads: UploadThreads, ConcurrentStreamParts: true,
			ContentType: "application/zstd", DisableContentSha256: true,
		})
		if err != nil {
			pr.CloseWithError(err)
			u.err = fmt.Errorf("uploading %s: %w", loc, classify(loc, err))
			return
		}
		u.size = info.Size
		pr.Close()
	}()
	return u, nil
}

// Write sends p into the upload.
func (u *Upload) Write(p []byte) (int, error) {
	n, err := u.pw.Write(p)
	u.written.Add(int64(n))
	if err != nil {
		<-u.done
		if u.err != nil {
			return n, u.err
		}
		return n, fmt.Errorf("uploading %s: %w", u.loc, err)
	}
	return n, nil
}

// Close completes the upload: the object appears under its key only now.
func (u *Upload) Close() error {
	u.pw.Close()
	<-u.done
	u.cancel()
	u.c.closeIdle()
	if u.err != nil {
		return u.err
	}
	if u.size != u.written.Load() {
		return fmt.Errorf("uploading %s: the server stored %d bytes of %d", u.loc, u.size, u.written.Load())
	}
	return nil
}

// Abort stops the upload and removes its parts: nothing appears under the
// key. It is safe after Close (then it does nothing).
func (u *Upload) Abort() {
	u.pw.CloseWithError(ErrAborted)
	<-u.done
	u.cancel()
	u.c.closeIdle()
}
