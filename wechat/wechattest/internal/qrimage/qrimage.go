// Package qrimage renders QR codes as PNG and JPEG images, with the quiet
// zone that scanners need.
package qrimage

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"

	"rsc.io/qr"
)

// quietZone is the white border, in modules, that the QR standard asks for.
const quietZone = 4

// Options choose how a code is drawn. Zero fields take the defaults.
type Options struct {
	// Size is the wanted width in pixels; the image is the largest whole
	// number of pixels per module that fits, at least 1. Default 8 pixels
	// per module.
	Size int
	// Transparent leaves the light modules transparent (PNG only).
	Transparent bool
}

// Image returns text as a QR code at error correction level M.
func Image(text string, opt Options) (image.Image, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return nil, fmt.Errorf("qr encode: %w", err)
	}
	modules := code.Size + 2*quietZone
	scale := 8
	if opt.Size > 0 {
		scale = max(opt.Size/modules, 1)
	}
	side := modules * scale
	light := color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xff}
	if opt.Transparent {
		light = color.NRGBA{}
	}
	dark := color.NRGBA{A: 0xff}
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		for x := range side {
			c := light
			if code.Black(x/scale-quietZone, y/scale-quietZone) {
				c = dark
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img, nil
}

// PNG returns text as a QR code in PNG.
func PNG(text string, opt Options) ([]byte, error) {
	img, err := Image(text, opt)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("png encode: %w", err)
	}
	return b.Bytes(), nil
}

// JPEG returns text as a QR code in JPEG, the format WeChat serves its
// codes in.
func JPEG(text string, opt Options) ([]byte, error) {
	opt.Transparent = false
	img, err := Image(text, opt)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		return nil, fmt.Errorf("jpeg encode: %w", err)
	}
	return b.Bytes(), nil
}
