package wechat

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Message
	}{
		{"B subscribe with scene", vecBPlain, Message{
			ToUserName: "gh_0123456789ab", FromUserName: "oUser_openid_0001", CreateTime: 1700000000,
			MsgType: "event", Event: "subscribe", EventKey: "qrscene_login_3f2a9c", Ticket: "gQFAKE_TICKET==",
		}},
		{"A text", vecAPlain, Message{
			ToUserName: "asdasdasd", FromUserName: "asdasdasdsadasd", CreateTime: 1234567898,
			MsgType: "text", Content: "hello", MsgID: 12345,
		}},
		{"scan without CDATA, whitespace", "<xml>\n  <ToUserName>gh_x</ToUserName>\n  <FromUserName>o1</FromUserName>\n  <CreateTime> 1700000000 </CreateTime>\n  <MsgType>event</MsgType>\n  <Event>SCAN</Event>\n  <EventKey>login_1</EventKey>\n</xml>", Message{
			ToUserName: "gh_x", FromUserName: "o1", CreateTime: 1700000000, MsgType: "event", Event: "SCAN", EventKey: "login_1",
		}},
		{"empty EventKey", "<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>", Message{
			MsgType: "event", Event: "subscribe",
		}},
		{"safe-mode envelope", "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[" + vecBEncrypt + "]]></Encrypt></xml>", Message{
			ToUserName: "gh_0123456789ab", Encrypt: vecBEncrypt,
		}},
		{"xml declaration", `<?xml version="1.0" encoding="UTF-8"?><xml><MsgType>text</MsgType></xml>`, Message{MsgType: "text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseMessage: %v", err)
			}
			m.XMLName = tt.want.XMLName
			if *m != tt.want {
				t.Errorf("ParseMessage =\n%+v\nwant\n%+v", *m, tt.want)
			}
		})
	}
}

func TestParseMessageErrors(t *testing.T) {
	for _, body := range []string{
		"",
		"success",
		"<root><MsgType>text</MsgType></root>",
		"<xml><MsgType>text</MsgType>",
		"<xml><CreateTime>yesterday</CreateTime></xml>",
		"<xml><Content>\x00</Content></xml>",
		"<xml><Content>\xff</Content></xml>",
		`{"MsgType":"text"}`,
	} {
		if m, err := ParseMessage([]byte(body)); err == nil {
			t.Errorf("ParseMessage(%q) = %+v, want error", body, m)
		}
	}
}

func TestMarshalMatchesWeChat(t *testing.T) {
	// Parsing then marshalling vector B must give WeChat's bytes back.
	m, err := ParseMessage([]byte(vecBPlain))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != vecBPlain {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, vecBPlain)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	m := Message{
		ToUserName: "gh_1", FromUserName: "o<&>\"'", CreateTime: 1, MsgType: "text",
		Content: "a]]>b]]]]>c\nd 中文", MsgID: 1 << 62, Encrypt: "x+/=",
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseMessage(b)
	if err != nil {
		t.Fatalf("ParseMessage(%s): %v", b, err)
	}
	back.XMLName = m.XMLName
	if *back != m {
		t.Errorf("round trip =\n%+v\nwant\n%+v", *back, m)
	}
	if _, err := (&Message{Content: "\x01"}).Marshal(); err == nil {
		t.Error("Marshal(control character) succeeded, want error")
	}
}

func TestTextReply(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"plain", "login ok", "<Content><![CDATA[login ok]]></Content>"},
		{"cdata end", "a]]>b", "<Content><![CDATA[a]]]]><![CDATA[>b]]></Content>"},
		{"newline", "line1\nline2", "<Content><![CDATA[line1\nline2]]></Content>"},
		{"control chars", "a\x00b\xffc", "<Content><![CDATA[a\uFFFDb\uFFFDc]]></Content>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := TextReply("oUser", "gh_acct", 1700000001, tt.content)
			if !bytes.Contains(b, []byte(tt.want)) {
				t.Errorf("TextReply = %s, want it to contain %s", b, tt.want)
			}
			m, err := ParseMessage(b)
			if err != nil {
				t.Fatalf("TextReply output does not parse: %v\n%s", err, b)
			}
			if m.ToUserName != "oUser" || m.FromUserName != "gh_acct" || m.CreateTime != 1700000001 || m.MsgType != MsgTypeText {
				t.Errorf("TextReply fields = %+v", m)
			}
			if !strings.Contains(tt.name, "control") && m.Content != tt.content {
				t.Errorf("Content = %q, want %q", m.Content, tt.content)
			}
		})
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte(vecBPlain))
	f.Add([]byte(vecAPlain))
	for _, b := range sameAsUnmarshal {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameAsUnmarshal(t, body)
		checkFlatSameAsTokens(t, body)
		m, err := ParseMessage(body)
		if err != nil {
			return
		}
		// What parses must marshal and parse back to the same Message.
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed %+v: %v", m, err)
		}
		back, err := ParseMessage(out)
		if err != nil {
			t.Fatalf("ParseMessage(Marshal) of %s: %v", out, err)
		}
		back.XMLName = m.XMLName
		if *back != *m {
			t.Fatalf("round trip:\n%+v\n%+v", *m, *back)
		}
	})
}

// Bodies on which ParseMessage must read exactly what xml.Unmarshal reads.
var sameAsUnmarshal = []string{
	vecAPlain, vecBPlain, "", "success", "<root/>", "<xml/>", "<xml></xml>trailing", "junk<xml><MsgType>a</MsgType></xml>",
	"<!-- c --><xml><MsgType>a</MsgType></xml>", `<x:xml xmlns:x="urn:x"><x:MsgType>a</x:MsgType></x:xml>`,
	"<xml><MsgType>a</MsgType><MsgType>b</MsgType></xml>", "<xml><Content>a<b>nested</b>c<![CDATA[d]]></Content></xml>",
	"<xml><Unknown><MsgType>x</MsgType></Unknown><Event>e</Event></xml>", "<xml><CreateTime></CreateTime></xml>",
	"<xml><CreateTime> </CreateTime></xml>", "<xml><CreateTime> 12 </CreateTime><MsgId>-3</MsgId></xml>",
	"<xml><CreateTime>99999999999999999999</CreateTime></xml>", "<xml><MsgType a='1'>t</MsgType></xml>",
	"<xml><MsgType>t</Event></xml>", "<xml><MsgType>&amp;&lt;</MsgType></xml>", "<xml><MsgType>&bogus;</MsgType></xml>",
	"<xml><Content><!-- c -->x</Content></xml>", "<xml><xml><MsgType>inner</MsgType></xml></xml>",
	// Near misses of the fast path's shape.
	"<xml></xmlx>", "<xml></xml >", "<xml><A>x</B></xml>", "<xml><A>x</A ></xml>", "<xml><A/></xml>", "<xml><1a>x</1a></xml>",
	"<xml><MsgType>a\rb</MsgType></xml>", "<xml><MsgType>a\r\nb</MsgType></xml>", "<xml><MsgType><![CDATA[a\r\nb]]></MsgType></xml>",
	"<xml><MsgType><![CDATA[a]]]></MsgType></xml>", "<xml><MsgType>]]></MsgType></xml>", "<xml><MsgType>a>b</MsgType></xml>",
	"<xml><MsgType><![CDATA[a</MsgType></xml>", "<xml><CreateTime>1x</CreateTime></xml>", "<xml><CreateTime><![CDATA[ 7 ]]></CreateTime></xml>",
	"<xml><MsgType>a</MsgType>", "<xml><MsgType>a</MsgType> x </xml>", "<xml><MsgType>\u00e9</MsgType></xml>", "<xml><MsgType>\x01</MsgType></xml>",
	"<xml><MsgType><![CDATA[\x00]]></MsgType></xml>", "<xml><MsgType><![CDATA[\xff]]></MsgType></xml>", " <xml><MsgType>a</MsgType></xml>",
}

func TestParseMessageSameAsUnmarshal(t *testing.T) {
	for _, b := range sameAsUnmarshal {
		checkSameAsUnmarshal(t, []byte(b))
		checkFlatSameAsTokens(t, []byte(b))
	}
}

// The shapes WeChat sends, and Marshal writes, take the fast path.
func TestParseFlatReadsWeChatShapes(t *testing.T) {
	marshalled, err := (&Message{
		ToUserName: "gh_x", FromUserName: "o1", CreateTime: 1700000000, MsgType: "event",
		Event: "SCAN", EventKey: "login_1", Ticket: "gQ<&>]]>x",
	}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		vecAPlain, vecBPlain, string(marshalled),
		"<xml>\n  <ToUserName>gh_x</ToUserName>\n\t<CreateTime> 17 </CreateTime>\r\n</xml>",
		"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[" + vecBEncrypt + "]]></Encrypt></xml>",
		"<xml><Unknown>x</Unknown><Content>a<![CDATA[b]]>c</Content></xml>trailing",
	} {
		if _, ok := parseFlat([]byte(body)); !ok {
			t.Errorf("parseFlat(%q) left it to encoding/xml", body)
		}
		checkSameAsUnmarshal(t, []byte(body))
		checkFlatSameAsTokens(t, []byte(body))
	}
}

// checkFlatSameAsTokens fails if parseFlat reads body and the token walk
// reads it differently or not at all.
func checkFlatSameAsTokens(t *testing.T, body []byte) {
	t.Helper()
	got, ok := parseFlat(body)
	if !ok {
		return
	}
	want, err := parseTokens(body)
	switch {
	case err != nil:
		t.Fatalf("%q: parseFlat read it, the token walk failed: %v", body, err)
	case *got != *want:
		t.Fatalf("%q: parseFlat\n%+v\ntoken walk\n%+v", body, *got, *want)
	}
}

// checkSameAsUnmarshal fails unless ParseMessage and xml.Unmarshal into a
// Message agree on body: both fail, or both read the same Message.
func checkSameAsUnmarshal(t *testing.T, body []byte) {
	t.Helper()
	var want Message
	werr := xml.Unmarshal(body, &want)
	got, err := ParseMessage(body)
	switch {
	case (werr == nil) != (err == nil):
		t.Fatalf("%q: ParseMessage error %v, xml.Unmarshal error %v", body, err, werr)
	case err == nil && *got != want:
		t.Fatalf("%q: ParseMessage\n%+v\nxml.Unmarshal\n%+v", body, *got, want)
	}
}

// BenchmarkParseMessage reads a subscribe event: the fast path, and the
// token walk it falls back to.
func BenchmarkParseMessage(b *testing.B) {
	body := []byte(vecBPlain)
	b.Run("flat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseFlat(body); !ok {
				b.Fatal("not flat")
			}
		}
	})
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseTokens(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
