package wechat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Values of [Message].MsgType and [Message].Event that the login flow uses.
const (
	MsgTypeEvent = "event"
	MsgTypeText  = "text"

	// EventSubscribe is a follow; after scanning a parametric QR code its
	// EventKey is EventKeyScenePrefix + scene.
	EventSubscribe = "subscribe"
	// EventUnsubscribe is an unfollow.
	EventUnsubscribe = "unsubscribe"
	// EventScan is an existing follower scanning a parametric QR code; its
	// EventKey is the scene itself. WeChat spells it in upper case.
	EventScan = "SCAN"

	// EventKeyScenePrefix prefixes the scene in the EventKey of a subscribe
	// event caused by a parametric QR code.
	EventKeyScenePrefix = "qrscene_"
)

// Message is one event or message that WeChat POSTs to the callback: the
// plain body, or the inner XML after [Crypter.Decrypt]. In compatible and
// safe mode the outer envelope parses into it too, with Encrypt set.
// Absent elements are left empty (or zero).
type Message struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string   `xml:"ToUserName"`
	FromUserName string   `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      string   `xml:"MsgType"`
	Event        string   `xml:"Event"`
	EventKey     string   `xml:"EventKey"`
	Ticket       string   `xml:"Ticket"`
	MsgID        int64    `xml:"MsgId"`
	Content      string   `xml:"Content"`
	Encrypt      string   `xml:"Encrypt"`
}

// ParseMessage decodes an XML body into a Message. The root element must be
// <xml>; unknown elements are ignored; CDATA and plain text are both
// accepted. It never panics; the caller should limit the body size before.
//
// It reads the same as xml.Unmarshal into Message, which the tests and
// FuzzParseMessage check body by body, but without reflection: bodies of the
// shape WeChat sends are read directly (parseFlat), any other body by a walk
// over encoding/xml's tokens.
func ParseMessage(body []byte) (*Message, error) {
	m, err := parseMessage(body)
	if err != nil {
		return nil, fmt.Errorf("wechat: parse message: %w", err)
	}
	return m, nil
}

func parseMessage(body []byte) (*Message, error) {
	if m, ok := parseFlat(body); ok {
		return m, nil
	}
	return parseTokens(body)
}

// parseTokens reads body token by token with encoding/xml.
func parseTokens(body []byte) (*Message, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	var root xml.StartElement
	for { // like Unmarshal, skip whatever comes before the first element
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			root = se
			break
		}
	}
	if root.Name.Local != "xml" {
		return nil, fmt.Errorf("expected element type <xml> but have <%s>", root.Name.Local)
	}
	m := &Message{XMLName: root.Name}
	var text []byte
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return m, nil // the root's: Token checks that tags match
		case xml.StartElement:
			str, num := m.field(t.Name.Local)
			if str == nil && num == nil {
				if err := d.Skip(); err != nil {
					return nil, err
				}
				continue
			}
			if text, err = elementText(d, text[:0]); err != nil {
				return nil, err
			}
			if str != nil {
				*str = string(text)
				continue
			}
			if *num, err = parseInt(text); err != nil {
				return nil, err
			}
		}
	}
}

// parseFlat reads body without encoding/xml when it has the shape WeChat
// sends: <xml> first, then elements whose names are ASCII letters, digits
// and '_', each holding only text and CDATA, with whitespace between them.
// Text may hold printable ASCII, tab and newline (no '&', '<', '>' or ']');
// CDATA also '&', '<', '>' and ']'. Anything else (a prolog, attributes,
// entities, comments, nested elements, '\r', bytes past ASCII, a number
// that does not parse) makes ok false, and the caller uses encoding/xml, so
// the fast path only ever decides bodies on which it reads exactly what
// encoding/xml reads; FuzzParseMessage checks that. It exists because
// encoding/xml, which reads a byte at a time through an interface, was a
// large part of the callback's CPU per event (docs/benchmarks.md).
func parseFlat(body []byte) (m *Message, ok bool) {
	rest, ok := bytes.CutPrefix(body, []byte("<xml>"))
	if !ok {
		return nil, false
	}
	m = &Message{XMLName: xml.Name{Local: "xml"}}
	var text []byte
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) < 2 || rest[0] != '<' {
			return nil, false
		}
		if rest[1] == '/' {
			if !bytes.HasPrefix(rest, []byte("</xml>")) {
				return nil, false
			}
			return m, true // like the token walk, ignore what follows
		}
		n := nameLen(rest[1:])
		if n == 0 || len(rest) < 1+n+1 || rest[1+n] != '>' {
			return nil, false
		}
		name := rest[1 : 1+n]
		if rest, text, ok = flatText(rest[1+n+1:], text[:0]); !ok {
			return nil, false
		}
		// rest starts after "</"; the end tag must be this element's.
		if len(rest) < n+1 || !bytes.Equal(rest[:n], name) || rest[n] != '>' {
			return nil, false
		}
		rest = rest[n+1:]
		str, num := m.field(string(name)) // the conversion does not allocate: name does not escape
		switch {
		case str != nil:
			*str = string(text)
		case num != nil:
			v, err := parseInt(text)
			if err != nil {
				return nil, false
			}
			*num = v
		}
	}
}

// nameLen is the length of the element name at the start of b: a letter or
// '_', then letters, digits and '_'.
func nameLen(b []byte) int {
	for i, c := range b {
		switch {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return i
		}
	}
	return len(b)
}

// flatText appends to buf the text and CDATA at the start of b up to "</",
// and returns what follows "</". ok is false for anything parseFlat leaves
// to encoding/xml.
func flatText(b, buf []byte) (rest, text []byte, ok bool) {
	cdataStart, cdataEnd := []byte("<![CDATA["), []byte("]]>")
	for {
		i := 0
		for i < len(b) && plainTextByte(b[i]) {
			i++
		}
		buf = append(buf, b[:i]...)
		b = b[i:]
		switch {
		case len(b) >= 2 && b[0] == '<' && b[1] == '/':
			return b[2:], buf, true
		case bytes.HasPrefix(b, cdataStart):
			b = b[len(cdataStart):]
			end := bytes.Index(b, cdataEnd)
			if end < 0 {
				return nil, nil, false
			}
			for _, c := range b[:end] {
				if !asciiTextByte(c) {
					return nil, nil, false
				}
			}
			buf = append(buf, b[:end]...)
			b = b[end+len(cdataEnd):]
		default:
			return nil, nil, false
		}
	}
}

// asciiTextByte reports whether c stands for itself in CDATA with no
// normalization: printable ASCII, tab, newline.
func asciiTextByte(c byte) bool {
	return c == '\t' || c == '\n' || 0x20 <= c && c < 0x7f
}

// plainTextByte is asciiTextByte outside CDATA: also not '&', '<', '>' or ']'.
func plainTextByte(c byte) bool {
	return asciiTextByte(c) && c != '&' && c != '<' && c != '>' && c != ']'
}

// field returns where the element called name goes: a string or a number
// of m, or neither for an element Message does not know.
func (m *Message) field(name string) (*string, *int64) {
	switch name {
	case "ToUserName":
		return &m.ToUserName, nil
	case "FromUserName":
		return &m.FromUserName, nil
	case "CreateTime":
		return nil, &m.CreateTime
	case "MsgType":
		return &m.MsgType, nil
	case "Event":
		return &m.Event, nil
	case "EventKey":
		return &m.EventKey, nil
	case "Ticket":
		return &m.Ticket, nil
	case "MsgId":
		return nil, &m.MsgID
	case "Content":
		return &m.Content, nil
	case "Encrypt":
		return &m.Encrypt, nil
	}
	return nil, nil
}

// elementText appends to buf the character data (text and CDATA) directly
// inside the element just started, up to its end; elements nested in it are
// skipped, as Unmarshal does for a string field.
func elementText(d *xml.Decoder, buf []byte) ([]byte, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return buf, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			buf = append(buf, t...)
		case xml.StartElement:
			if err := d.Skip(); err != nil {
				return buf, err
			}
		case xml.EndElement:
			return buf, nil
		}
	}
}

// parseInt reads a number element as Unmarshal does: empty is 0, and
// surrounding spaces are allowed.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Marshal renders m the way WeChat sends it: root <xml>, strings in CDATA,
// numbers bare, elements in WeChat's order, empty strings and zero numbers
// left out. Simulators and tests use it to produce realistic callbacks. It
// fails if a string holds characters XML cannot carry.
func (m *Message) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("<xml>")
	str := func(name, v string) error {
		if v == "" {
			return nil
		}
		if !validXMLText(v) {
			return fmt.Errorf("wechat: marshal message: %s is not valid XML text", name)
		}
		writeCDATAElem(&b, name, v)
		return nil
	}
	num := func(name string, v int64) {
		if v != 0 {
			b.WriteString("<" + name + ">" + strconv.FormatInt(v, 10) + "</" + name + ">")
		}
	}
	if err := str("ToUserName", m.ToUserName); err != nil {
		return nil, err
	}
	if err := str("FromUserName", m.FromUserName); err != nil {
		return nil, err
	}
	num("CreateTime", m.CreateTime)
	for _, f := range []struct{ name, v string }{
		{"MsgType", m.MsgType},
		{"Event", m.Event},
		{"EventKey", m.EventKey},
		{"Ticket", m.Ticket},
		{"Content", m.Content},
	} {
		if err := str(f.name, f.v); err != nil {
			return nil, err
		}
	}
	num("MsgId", m.MsgID)
	if err := str("Encrypt", m.Encrypt); err != nil {
		return nil, err
	}
	b.WriteString("</xml>")
	return b.Bytes(), nil
}

// TextReply renders a passive text reply. The caller swaps
// the request's users: toUser is the request's FromUserName (the user's
// OpenID), fromUser its ToUserName (the account). Strings go into CDATA with
// any "]]>" split safely; characters XML cannot carry become U+FFFD, so the
// result is always well-formed.
func TextReply(toUser, fromUser string, createTime int64, content string) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	writeCDATAElem(&b, "ToUserName", sanitizeXMLText(toUser))
	writeCDATAElem(&b, "FromUserName", sanitizeXMLText(fromUser))
	b.WriteString("<CreateTime>" + strconv.FormatInt(createTime, 10) + "</CreateTime>")
	writeCDATAElem(&b, "MsgType", MsgTypeText)
	writeCDATAElem(&b, "Content", sanitizeXMLText(content))
	b.WriteString("</xml>")
	return b.Bytes()
}

// EncryptedReply is the envelope of an encrypted passive reply, as
// produced by [Crypter.EncryptReply]. Simulators and tests parse
// it to check our replies: verify MsgSignature with
// [Crypter.VerifyMsgSignature](MsgSignature, TimeStamp, Nonce, Encrypt),
// then [Crypter.Decrypt](Encrypt).
type EncryptedReply struct {
	Encrypt, MsgSignature, TimeStamp, Nonce string
}

// ParseEncryptedReply decodes an encrypted reply envelope. The root must be
// <xml> and all four elements must be present and non-empty.
func ParseEncryptedReply(body []byte) (*EncryptedReply, error) {
	var v struct {
		XMLName      xml.Name `xml:"xml"`
		Encrypt      string   `xml:"Encrypt"`
		MsgSignature string   `xml:"MsgSignature"`
		TimeStamp    string   `xml:"TimeStamp"`
		Nonce        string   `xml:"Nonce"`
	}
	if err := xml.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("wechat: parse encrypted reply: %w", err)
	}
	r := &EncryptedReply{
		Encrypt:      v.Encrypt,
		MsgSignature: v.MsgSignature,
		TimeStamp:    strings.TrimSpace(v.TimeStamp),
		Nonce:        v.Nonce,
	}
	if r.Encrypt == "" || r.MsgSignature == "" || r.TimeStamp == "" || r.Nonce == "" {
		return nil, errors.New("wechat: parse encrypted reply: missing Encrypt, MsgSignature, TimeStamp or Nonce")
	}
	return r, nil
}

// writeCDATAElem writes <name><![CDATA[v]]></name>, splitting any "]]>" in v
// across two CDATA sections. v must be valid XML text.
func writeCDATAElem(b *bytes.Buffer, name, v string) {
	b.WriteString("<" + name + "><![CDATA[")
	b.WriteString(strings.ReplaceAll(v, "]]>", "]]]]><![CDATA[>"))
	b.WriteString("]]></" + name + ">")
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		(r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) ||
		(r >= 0x10000 && r <= 0x10FFFF)
}

// validXMLText reports whether s is valid UTF-8 made only of XML characters.
func validXMLText(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false
			}
		}
		if !isXMLChar(r) {
			return false
		}
	}
	return true
}

// sanitizeXMLText replaces invalid UTF-8 and non-XML characters with U+FFFD.
func sanitizeXMLText(s string) string {
	if validXMLText(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if !isXMLChar(r) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}
