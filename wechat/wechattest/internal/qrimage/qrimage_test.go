package qrimage

import (
	"bytes"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/scanlogin/scanlogin/wechat/wechattest/internal/qrscan"
)

func TestRoundTrip(t *testing.T) {
	const text = "http://127.0.0.1:8090/scan/CMAa4NqzejXdllCH"
	b, err := PNG(text, Options{Size: 430})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if w := img.Bounds().Dx(); w > 430 || w < 300 {
		t.Fatalf("width %d for Size 430", w)
	}
	if got := qrscan.Decode(t, img); got != text {
		t.Fatalf("PNG decodes to %q", got)
	}
	b, err = JPEG(text, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = jpeg.Decode(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if got := qrscan.Decode(t, img); got != text {
		t.Fatalf("JPEG decodes to %q", got)
	}
	b, _ = PNG(text, Options{Transparent: true})
	img, _ = png.Decode(bytes.NewReader(b))
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatal("transparent PNG has an opaque border")
	}
}
