// Package compress owns usmtkit's archive format (docs/format.md): a PAX tar
// stream compressed as a chain of independent zstd frames, one per tar header
// and one per file chunk, followed by a binary table of contents and a footer
// in zstd skippable frames. GNU tar and the zstd CLI read such an archive
// without usmtkit; usmtkit reads any byte of any file at random through the
// TOC.
//
// It owns:
//
//   - the format constants, the footer and the TOC (format.go, toc.go);
//   - the writer, which turns any store.Store into an archive (writer.go);
//   - the reader, which opens an archive as a store.Store with random access,
//     a decoded-chunk cache and full verification (reader.go); it registers
//     itself as store.KindArchive so store.Open finds it;
//   - salvage of damaged, truncated or index-less archives (salvage.go).
//
// It imports nothing of usmtkit but package store, and nothing of FUSE.
//
// # Trust
//
// Nothing read from an archive is trusted before it is checked: the footer
// and TOC are validated completely (sizes capped before any allocation,
// checksums, every offset and range) when the archive is opened, and every
// chunk decoded whole is checked (zstd checksum and xxhash64). A random
// read decodes a chunk only up to the read's end: those bytes are checked
// by the zstd block decoder alone, and the chunk's checksums when a later
// read completes it; a chunk found damaged fails every later read
// (reader.go, decodeRange; docs/mount.md). Bad input gives an error, never
// a panic; the fuzz targets prove it.
package compress
