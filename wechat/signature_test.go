package wechat

import "testing"

func TestSignature(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		// Vector D: the plaintext-mode example of WeChat's documentation.
		{"D", []string{"AAAAA", "1714037059", "486452656"}, "899cf89e464efb63f54ddac96b0a0a235f53aa78"},
		// Vector B: URL signature of the event.
		{"B url", []string{vecToken, vecBTimestamp, vecBNonce}, vecBSig},
		// Vectors B and C: msg_signature over the ciphertext.
		{"B msg", []string{vecToken, vecBTimestamp, vecBNonce, vecBEncrypt}, vecBMsgSig},
		{"C msg", []string{vecToken, vecCTimestamp, vecCNonce, vecCEncrypt}, vecCMsgSig},
		{"A msg", []string{vecToken, vecATimestamp, vecANonce, vecAEncrypt}, vecAMsgSig},
		// Order of the arguments does not matter.
		{"D shuffled", []string{"486452656", "AAAAA", "1714037059"}, "899cf89e464efb63f54ddac96b0a0a235f53aa78"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Signature(tt.parts...); got != tt.want {
				t.Errorf("Signature(%q) = %s, want %s", tt.parts, got, tt.want)
			}
			if !VerifySignature(tt.want, tt.parts...) {
				t.Error("VerifySignature(right) = false")
			}
			if VerifySignature(tt.want[:39], tt.parts...) {
				t.Error("VerifySignature(truncated) = true")
			}
			if VerifySignature(tt.want, append(tt.parts, "x")...) {
				t.Error("VerifySignature(other parts) = true")
			}
		})
	}
}

func TestSignatureDoesNotReorderCallerSlice(t *testing.T) {
	parts := []string{"c", "b", "a"}
	Signature(parts...)
	if parts[0] != "c" || parts[2] != "a" {
		t.Errorf("Signature reordered the caller's slice: %q", parts)
	}
}
