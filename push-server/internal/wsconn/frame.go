package wsconn

import "encoding/binary"

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// frame is the header of one client frame at the front of a buffer.
type frame struct {
	opcode    byte
	fin       bool
	masked    bool
	headerLen int   // bytes of header, mask key included
	length    int64 // payload bytes
}

// total is the frame's size on the wire.
func (f frame) total() int64 { return int64(f.headerLen) + f.length }

// parseHeader reads the frame header at the front of b. ok is false when b
// does not yet hold the whole header. It never reads past b.
func parseHeader(b []byte) (f frame, ok bool) {
	if len(b) < 2 {
		return f, false
	}
	f.fin = b[0]&0x80 != 0
	f.opcode = b[0] & 0x0f
	f.masked = b[1]&0x80 != 0
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < n+2 {
			return f, false
		}
		f.length = int64(binary.BigEndian.Uint16(b[n:]))
		n += 2
	case 127:
		if len(b) < n+8 {
			return f, false
		}
		f.length = int64(binary.BigEndian.Uint64(b[n:]) & (1<<63 - 1))
		n += 8
	default:
		f.length = int64(l)
	}
	if f.masked {
		n += 4
	}
	if len(b) < n {
		return f, false
	}
	f.headerLen = n
	return f, true
}

// isControl reports whether the opcode is a control frame's.
func isControl(op byte) bool { return op&0x8 != 0 }

// unit decides what to do with the bytes at the front of b, read from a
// browser but not yet handed to gorilla. It returns:
//
//   - pong: a complete pong frame of n bytes that we answer ourselves
//     (gorilla would go on reading after it and block an idle connection);
//   - ping: likewise a complete ping frame, with its unmasked payload;
//   - n > 0 otherwise: gorilla may read n bytes, a complete message (all its
//     fragments) or close frame, or the header of a frame over limit that
//     gorilla will refuse without reading further;
//   - n == 0: wait for more bytes.
//
// frames is how many frames the n bytes hold (control frames between the
// fragments of a message included), for the connection's frame budget.
func unit(b []byte, limit int64) (n int, kind unitKind, payload []byte, frames int) {
	f, ok := parseHeader(b)
	if !ok {
		return 0, unitWait, nil, 0
	}
	if !isControl(f.opcode) && f.length > limit {
		return f.headerLen, unitGorilla, nil, 1 // gorilla answers 1009
	}
	if isControl(f.opcode) && f.length > 125 {
		return f.headerLen, unitGorilla, nil, 1 // gorilla answers 1002
	}
	if f.total() > int64(len(b)) {
		return 0, unitWait, nil, 0
	}
	switch {
	case f.opcode == opPong && f.fin:
		return int(f.total()), unitPong, nil, 1
	case f.opcode == opPing && f.fin && f.length <= 125 && f.masked:
		p := append([]byte(nil), b[f.headerLen:f.total()]...)
		unmask(b[f.headerLen-4:f.headerLen], p)
		return int(f.total()), unitPing, p, 1
	case isControl(f.opcode) || f.fin:
		// close, a one-frame message, or a malformed control frame that
		// gorilla rejects by itself
		return int(f.total()), unitGorilla, nil, 1
	}
	// A fragmented message: gorilla reads all of it, so wait for its last
	// fragment (control frames in between are gorilla's to handle).
	off := f.total()
	var size = f.length
	for frames = 2; ; frames++ {
		g, ok := parseHeader(b[off:])
		if !ok {
			return 0, unitWait, nil, 0
		}
		if isControl(g.opcode) && g.length > 125 {
			return int(off) + g.headerLen, unitGorilla, nil, frames // gorilla answers 1002
		}
		if !isControl(g.opcode) {
			size += g.length
			if size > limit {
				return int(off) + g.headerLen, unitGorilla, nil, frames
			}
		}
		if off+g.total() > int64(len(b)) {
			return 0, unitWait, nil, 0
		}
		off += g.total()
		if !isControl(g.opcode) && g.fin {
			return int(off), unitGorilla, nil, frames
		}
	}
}

// countFrames counts the frames that begin in b, the last one possibly
// incomplete.
func countFrames(b []byte) int {
	n := 0
	for len(b) > 0 {
		n++
		f, ok := parseHeader(b)
		if !ok || f.total() >= int64(len(b)) {
			break
		}
		b = b[f.total():]
	}
	return n
}

type unitKind int

const (
	unitWait unitKind = iota
	unitGorilla
	unitPong
	unitPing
)

func unmask(key, p []byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}
