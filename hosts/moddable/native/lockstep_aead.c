/*
 * lockstep_aead: AES_256_CBC_HMAC_SHA_512 (RFC 7518 §5.2.2, §5.2.5), secure
 * random bytes, and X25519 (RFC 7748) with HKDF-SHA-512 (RFC 5869) for the DH
 * rekey mode, as an xsmc native module. Shared by every backend
 * (see lockstep_aead_backend.h); the JS side is lockstep_aead.js.
 *
 * Invariants:
 * - Key = MAC_KEY (first 32 bytes) ‖ ENC_KEY (last 32 bytes) (§5.2.2.1).
 *   seal returns E ‖ T, T = first 32 bytes of HMAC-SHA-512(MAC_KEY, A ‖ IV ‖ E ‖ AL)
 *   with AL the bit length of A as a 64-bit big-endian integer (§5.2.2.1 step 4).
 * - open compares T in constant time BEFORE decrypting anything (no padding
 *   oracle), and every authentication failure (tag length, tag, ciphertext
 *   length, padding) is the same outcome: it returns undefined, which the
 *   JS wrapper turns into LockstepError('AUTH_FAILED').
 * - Local misuse (argument count, non-buffer, wrong key/IV length, an input
 *   to seal longer than LOCKSTEP_AEAD_MAX_INPUT_BYTES, detached, shared, host
 *   or read-only buffers) throws a TypeError/RangeError prefixed "lockstep_aead:".
 *   open treats an oversized ciphertext or AAD as an authentication failure.
 * - Only memory of ordinary ArrayBuffers (xsBufferRelocatable) is accepted.
 *   Every call measures its inputs, then makes its one XS allocation (the
 *   result), then fetches the pointers it uses; no XS call follows, so no
 *   pointer is used after the GC could have moved it.
 * - No secret (MAC, decrypted block) lives on the C stack across an XS call
 *   or a throw: each is wiped before the next XS call, and before throwing.
 */
/* Moddable compiles module C with -Wno-implicit-function-declaration; here a
 * call to an undeclared function is an error. */
#pragma GCC diagnostic error "-Wimplicit-function-declaration"

#include <string.h>

#include "xsmc.h"
#include "lockstep_aead_backend.h"

#ifndef LOCKSTEP_AEAD_MAX_INPUT_BYTES
/* Bounds every length (plaintext, ciphertext, AAD) so that no size
 * computation below can overflow a 32-bit XS length; 1 MiB is far above any
 * Lockstep frame and far below what an ESP32 could hold. */
#define LOCKSTEP_AEAD_MAX_INPUT_BYTES (1024 * 1024)
#endif

#define KEY_BYTES (LOCKSTEP_HMAC_KEY_BYTES + LOCKSTEP_AES_KEY_BYTES)
#define IV_BYTES LOCKSTEP_AES_BLOCK_BYTES
#define TAG_BYTES 32
#define BLOCK LOCKSTEP_AES_BLOCK_BYTES

typedef struct {
	uint8_t *data;
	size_t length;
} buffer_view;

void lockstep_wipe(void *data, size_t length)
{
	volatile uint8_t *p = (volatile uint8_t *)data;
	while (length--)
		*p++ = 0;
}

/* Returns 0 when equal, nonzero otherwise; time depends on `length` only. */
static uint8_t differ_in_constant_time(const uint8_t *a, const uint8_t *b, size_t length)
{
	uint8_t difference = 0;
	size_t i;
	for (i = 0; i < length; i++)
		difference |= a[i] ^ b[i];
	return difference;
}

/* PKCS#7 (RFC 5652 §6.3) on the last plaintext block: the pad length 1..16,
 * or 0 when malformed. Branch-free over the block although the tag has
 * already been verified when this runs. */
static size_t pkcs7_pad_length(const uint8_t block[BLOCK])
{
	unsigned pad = block[BLOCK - 1];
	unsigned bad = (pad == 0) | (pad > BLOCK);
	unsigned i;
	for (i = 0; i < BLOCK; i++) {
		unsigned inside = (i >= BLOCK - pad);
		bad |= inside & (block[i] != pad);
	}
	return bad ? 0 : pad;
}

static void store_al(uint8_t al[8], size_t aad_length)
{
	uint64_t bits = (uint64_t)aad_length * 8;
	int i;
	for (i = 7; i >= 0; i--) {
		al[i] = (uint8_t)bits;
		bits >>= 8;
	}
}

/* The view of an argument. Throws unless it is readable (or writable) memory
 * of an ordinary ArrayBuffer: _xsmcGetBuffer itself throws for detached,
 * out-of-bounds and (when writing) read-only buffers; shared and host
 * buffers come back non-relocatable and are refused here. */
static buffer_view view_of(xsMachine *the, xsSlot *slot, xsBooleanValue writable, const char *name)
{
	buffer_view view;
	void *data = NULL;
	xsUnsignedValue count = 0;
	if (_xsmcGetBuffer(the, slot, &data, &count, writable) != xsBufferRelocatable)
		xsTypeError("lockstep_aead: %s must be a Uint8Array over an ordinary ArrayBuffer", name);
	view.data = (uint8_t *)data;
	view.length = count;
	return view;
}

static buffer_view measured(xsMachine *the, xsSlot *slot, const char *name, size_t exact_length)
{
	buffer_view view = view_of(the, slot, 0, name);
	if (exact_length && view.length != exact_length)
		xsRangeError("lockstep_aead: %s must be %u bytes", name, (unsigned)exact_length);
	if (view.length > LOCKSTEP_AEAD_MAX_INPUT_BYTES)
		xsRangeError("lockstep_aead: %s longer than %u bytes", name, (unsigned)LOCKSTEP_AEAD_MAX_INPUT_BYTES);
	return view;
}

/* Re-fetches a view after an XS allocation; its length cannot have changed
 * (no JS ran), but checking keeps every later index provably in bounds. */
static buffer_view refetched(xsMachine *the, xsSlot *slot, const char *name, size_t expected_length)
{
	buffer_view view = view_of(the, slot, 0, name);
	if (view.length != expected_length)
		xsRangeError("lockstep_aead: %s changed length", name);
	return view;
}

static void require_arguments(xsMachine *the, xsIntegerValue count)
{
	if (xsmcArgc < count)
		xsTypeError("lockstep_aead: expected %d arguments", (int)count);
}

/* HMAC-SHA-512(MAC_KEY, A ‖ IV ‖ E ‖ AL) (§5.2.2.1 steps 4-5), full 64 bytes. */
static int compute_mac(const uint8_t *key, const buffer_view *aad, const uint8_t *iv,
	const uint8_t *ciphertext, size_t ciphertext_length, uint8_t mac[LOCKSTEP_SHA512_BYTES])
{
	uint8_t al[8];
	lockstep_span parts[4];
	store_al(al, aad->length);
	parts[0].data = aad->data;
	parts[0].length = aad->length;
	parts[1].data = iv;
	parts[1].length = IV_BYTES;
	parts[2].data = ciphertext;
	parts[2].length = ciphertext_length;
	parts[3].data = al;
	parts[3].length = sizeof(al);
	return lockstep_backend_hmac_sha512(key, parts, 4, mac);
}

/* Decrypts the final ciphertext block into `block` (the IV is the previous
 * ciphertext block, or the message IV for a one-block message). */
static int decrypt_last_block(const uint8_t *enc_key, const uint8_t *iv,
	const uint8_t *ciphertext, size_t length, uint8_t block[BLOCK])
{
	const uint8_t *chain = (length == BLOCK) ? iv : ciphertext + length - 2 * BLOCK;
	return lockstep_backend_aes256_cbc(0, enc_key, chain, ciphertext + length - BLOCK, block, BLOCK);
}

/** seal(key64, iv16, aad, plaintext) -> ArrayBuffer(ciphertext ‖ tag32) */
void xs_lockstep_aead_seal(xsMachine *the)
{
	buffer_view key, iv, aad, plaintext, out;
	size_t ciphertext_length, pad;
	uint8_t mac[LOCKSTEP_SHA512_BYTES];
	int failed;

	require_arguments(the, 4);
	key = measured(the, &xsArg(0), "key", KEY_BYTES);
	iv = measured(the, &xsArg(1), "iv", IV_BYTES);
	aad = measured(the, &xsArg(2), "aad", 0);
	plaintext = measured(the, &xsArg(3), "plaintext", 0);

	pad = BLOCK - (plaintext.length % BLOCK);
	ciphertext_length = plaintext.length + pad;
	xsmcSetArrayBuffer(xsResult, NULL, (xsIntegerValue)(ciphertext_length + TAG_BYTES));

	/* The allocation may have moved every buffer: fetch pointers now, and make no XS call below. */
	key = refetched(the, &xsArg(0), "key", KEY_BYTES);
	iv = refetched(the, &xsArg(1), "iv", IV_BYTES);
	aad = refetched(the, &xsArg(2), "aad", aad.length);
	plaintext = refetched(the, &xsArg(3), "plaintext", plaintext.length);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != ciphertext_length + TAG_BYTES)
		xsRangeError("lockstep_aead: result length");

	if (plaintext.length)
		memcpy(out.data, plaintext.data, plaintext.length);
	memset(out.data + plaintext.length, (int)pad, pad);
	failed = lockstep_backend_aes256_cbc(1, key.data + LOCKSTEP_HMAC_KEY_BYTES, iv.data,
		out.data, out.data, ciphertext_length);
	if (!failed)
		failed = compute_mac(key.data, &aad, iv.data, out.data, ciphertext_length, mac);
	if (!failed)
		memcpy(out.data + ciphertext_length, mac, TAG_BYTES);
	lockstep_wipe(mac, sizeof(mac));
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}

/** open(key64, iv16, aad, ciphertext, tag32) -> ArrayBuffer(plaintext) | undefined on any auth failure */
void xs_lockstep_aead_open(xsMachine *the)
{
	buffer_view key, iv, aad, ciphertext, tag, out;
	size_t pad, plaintext_length, full_blocks_length;
	uint8_t mac[LOCKSTEP_SHA512_BYTES];
	uint8_t block[BLOCK];
	int failed;
	uint8_t mismatch;

	require_arguments(the, 5);
	key = measured(the, &xsArg(0), "key", KEY_BYTES);
	iv = measured(the, &xsArg(1), "iv", IV_BYTES);
	aad = view_of(the, &xsArg(2), 0, "aad");
	ciphertext = view_of(the, &xsArg(3), 0, "ciphertext");
	tag = view_of(the, &xsArg(4), 0, "tag");

	/* Shapes no sealer produces (as in modules/crypto/a256cbc-hs512.ts) are
	 * authentication failures, not misuse: they come from the wire. */
	if (ciphertext.length == 0 || (ciphertext.length % BLOCK) != 0 || tag.length != TAG_BYTES
		|| ciphertext.length > LOCKSTEP_AEAD_MAX_INPUT_BYTES + BLOCK || aad.length > LOCKSTEP_AEAD_MAX_INPUT_BYTES)
		return;

	failed = compute_mac(key.data, &aad, iv.data, ciphertext.data, ciphertext.length, mac);
	mismatch = differ_in_constant_time(mac, tag.data, TAG_BYTES);
	lockstep_wipe(mac, sizeof(mac));
	if (failed)
		xsUnknownError("lockstep_aead: crypto backend failed");
	if (mismatch)
		return;

	/* Authentic: learn the plaintext length from the padding, keeping no plaintext across the allocation. */
	failed = decrypt_last_block(key.data + LOCKSTEP_HMAC_KEY_BYTES, iv.data, ciphertext.data, ciphertext.length, block);
	pad = failed ? 0 : pkcs7_pad_length(block);
	lockstep_wipe(block, sizeof(block));
	if (failed)
		xsUnknownError("lockstep_aead: crypto backend failed");
	if (pad == 0)
		return;

	plaintext_length = ciphertext.length - pad;
	full_blocks_length = ciphertext.length - BLOCK;
	xsmcSetArrayBuffer(xsResult, NULL, (xsIntegerValue)plaintext_length);

	/* The allocation may have moved every buffer: fetch pointers now, and make no XS call below. */
	key = refetched(the, &xsArg(0), "key", KEY_BYTES);
	iv = refetched(the, &xsArg(1), "iv", IV_BYTES);
	ciphertext = refetched(the, &xsArg(3), "ciphertext", ciphertext.length);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != plaintext_length || plaintext_length < full_blocks_length)
		xsRangeError("lockstep_aead: result length");

	failed = 0;
	if (full_blocks_length)
		failed = lockstep_backend_aes256_cbc(0, key.data + LOCKSTEP_HMAC_KEY_BYTES, iv.data,
			ciphertext.data, out.data, full_blocks_length);
	if (!failed)
		failed = decrypt_last_block(key.data + LOCKSTEP_HMAC_KEY_BYTES, iv.data, ciphertext.data, ciphertext.length, block);
	if (!failed && pkcs7_pad_length(block) != pad)
		failed = 1;
	if (!failed && BLOCK - pad)
		memcpy(out.data + full_blocks_length, block, BLOCK - pad);
	lockstep_wipe(block, sizeof(block));
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}

/*
 * The two primitives alone (modules/crypto/primitives.ts CipherPrimitives), so
 * the portable composition (modules/crypto/a256cbc-hs512.ts) can run over the
 * same backend. They carry no padding or tag logic.
 */

/** cbc(encrypt, key32, iv16, data) -> ArrayBuffer; data.length a nonzero multiple of 16. */
void xs_lockstep_aead_cbc(xsMachine *the)
{
	buffer_view key, iv, data, out;
	xsBooleanValue encrypt;
	int failed;

	require_arguments(the, 4);
	encrypt = xsmcTest(xsArg(0));
	key = measured(the, &xsArg(1), "key", LOCKSTEP_AES_KEY_BYTES);
	iv = measured(the, &xsArg(2), "iv", IV_BYTES);
	data = measured(the, &xsArg(3), "data", 0);
	if (data.length == 0 || (data.length % BLOCK) != 0)
		xsRangeError("lockstep_aead: data must be a nonzero multiple of 16 bytes");
	xsmcSetArrayBuffer(xsResult, NULL, (xsIntegerValue)data.length);

	key = refetched(the, &xsArg(1), "key", LOCKSTEP_AES_KEY_BYTES);
	iv = refetched(the, &xsArg(2), "iv", IV_BYTES);
	data = refetched(the, &xsArg(3), "data", data.length);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != data.length)
		xsRangeError("lockstep_aead: result length");
	failed = lockstep_backend_aes256_cbc(encrypt, key.data, iv.data, data.data, out.data, data.length);
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}

#define MAX_HMAC_PARTS 8

/** hmac(key32, ...parts) -> ArrayBuffer(64): HMAC-SHA-512 over the concatenated parts (at most 8). */
void xs_lockstep_aead_hmac(xsMachine *the)
{
	lockstep_span spans[MAX_HMAC_PARTS];
	size_t lengths[MAX_HMAC_PARTS];
	buffer_view key, part, out;
	xsIntegerValue count, i;
	int failed;

	require_arguments(the, 1);
	count = xsmcArgc - 1;
	if (count > MAX_HMAC_PARTS)
		xsRangeError("lockstep_aead: at most %d parts", MAX_HMAC_PARTS);
	key = measured(the, &xsArg(0), "key", LOCKSTEP_HMAC_KEY_BYTES);
	for (i = 0; i < count; i++)
		lengths[i] = measured(the, &xsArg(1 + i), "part", 0).length;
	xsmcSetArrayBuffer(xsResult, NULL, LOCKSTEP_SHA512_BYTES);

	key = refetched(the, &xsArg(0), "key", LOCKSTEP_HMAC_KEY_BYTES);
	for (i = 0; i < count; i++) {
		part = refetched(the, &xsArg(1 + i), "part", lengths[i]);
		spans[i].data = part.data;
		spans[i].length = part.length;
	}
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != LOCKSTEP_SHA512_BYTES)
		xsRangeError("lockstep_aead: result length");
	failed = lockstep_backend_hmac_sha512(key.data, spans, (size_t)count, out.data);
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}

/** random(bytes): fills a writable Uint8Array with cryptographically secure bytes. */
void xs_lockstep_aead_random(xsMachine *the)
{
	buffer_view bytes;
	require_arguments(the, 1);
	bytes = view_of(the, &xsArg(0), 1, "bytes");
	if (bytes.length > LOCKSTEP_AEAD_MAX_INPUT_BYTES)
		xsRangeError("lockstep_aead: bytes longer than %u bytes", (unsigned)LOCKSTEP_AEAD_MAX_INPUT_BYTES);
	if (bytes.length && lockstep_backend_random(bytes.data, bytes.length))
		xsUnknownError("lockstep_aead: random source failed");
}

/*
 * X25519 (RFC 7748) and HKDF-SHA-512 (RFC 5869) for the DH rekey mode
 * (docs/PROTOCOL.md §11; modules/crypto/primitives.ts KeyAgreementPrimitives).
 * The result is allocated first and the backend writes into it, so no private
 * key or shared secret sits on the C stack across the allocation.
 */

#define X25519_BYTES LOCKSTEP_X25519_BYTES

/** 1 when all `length` bytes are zero; time depends on `length` only. */
static int all_zero_in_constant_time(const uint8_t *data, size_t length)
{
	uint8_t bits = 0;
	size_t i;
	for (i = 0; i < length; i++)
		bits |= data[i];
	return (int)((((unsigned)bits) - 1u) >> 8) & 1;
}

/** x25519Public(private32) -> ArrayBuffer(32): X25519(k, 9). */
void xs_lockstep_aead_x25519_public(xsMachine *the)
{
	buffer_view private_key, out;
	int failed;

	require_arguments(the, 1);
	measured(the, &xsArg(0), "private key", X25519_BYTES);
	xsmcSetArrayBuffer(xsResult, NULL, X25519_BYTES);

	private_key = refetched(the, &xsArg(0), "private key", X25519_BYTES);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != X25519_BYTES)
		xsRangeError("lockstep_aead: result length");
	failed = lockstep_backend_x25519_public(private_key.data, out.data);
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}

/**
 * x25519(private32, peerPublic32) -> ArrayBuffer(32) | undefined: X25519(k, u),
 * undefined when u is low order (the library refused it, or the result is all
 * zero: RFC 7748 §6.1), the same outcome either way.
 */
void xs_lockstep_aead_x25519(xsMachine *the)
{
	buffer_view private_key, peer, out;
	int status;

	require_arguments(the, 2);
	measured(the, &xsArg(0), "private key", X25519_BYTES);
	measured(the, &xsArg(1), "public key", X25519_BYTES);
	xsmcSetArrayBuffer(xsResult, NULL, X25519_BYTES);

	private_key = refetched(the, &xsArg(0), "private key", X25519_BYTES);
	peer = refetched(the, &xsArg(1), "public key", X25519_BYTES);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != X25519_BYTES)
		xsRangeError("lockstep_aead: result length");
	status = lockstep_backend_x25519(private_key.data, peer.data, out.data);
	if (status == 0 && all_zero_in_constant_time(out.data, out.length))
		status = LOCKSTEP_BACKEND_REFUSED;
	if (status != 0)
		lockstep_wipe(out.data, out.length);
	if (status == LOCKSTEP_BACKEND_REFUSED) {
		xsmcSetUndefined(xsResult);
		return;
	}
	if (status != 0)
		xsUnknownError("lockstep_aead: crypto backend failed");
}

/** hkdf(salt, ikm, info, length) -> ArrayBuffer(length): HKDF-SHA-512, 1 ≤ length ≤ 16320. */
void xs_lockstep_aead_hkdf(xsMachine *the)
{
	buffer_view salt, ikm, info, out;
	lockstep_span salt_span, ikm_span, info_span;
	xsIntegerValue length;
	int failed;

	require_arguments(the, 4);
	salt = measured(the, &xsArg(0), "salt", 0);
	ikm = measured(the, &xsArg(1), "ikm", 0);
	info = measured(the, &xsArg(2), "info", 0);
	length = xsmcToInteger(xsArg(3));
	if (length < 1 || length > LOCKSTEP_HKDF_SHA512_MAX_BYTES)
		xsRangeError("lockstep_aead: HKDF-SHA-512 length must be 1..%d", LOCKSTEP_HKDF_SHA512_MAX_BYTES);
	xsmcSetArrayBuffer(xsResult, NULL, length);

	salt = refetched(the, &xsArg(0), "salt", salt.length);
	ikm = refetched(the, &xsArg(1), "ikm", ikm.length);
	info = refetched(the, &xsArg(2), "info", info.length);
	out = view_of(the, &xsResult, 1, "result");
	if (out.length != (size_t)length)
		xsRangeError("lockstep_aead: result length");
	salt_span.data = salt.data;
	salt_span.length = salt.length;
	ikm_span.data = ikm.data;
	ikm_span.length = ikm.length;
	info_span.data = info.data;
	info_span.length = info.length;
	failed = lockstep_backend_hkdf_sha512(&salt_span, &ikm_span, &info_span, out.data, out.length);
	if (failed) {
		lockstep_wipe(out.data, out.length);
		xsUnknownError("lockstep_aead: crypto backend failed");
	}
}
