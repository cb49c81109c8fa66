package dev.ext4j.dir;

import java.util.Objects;

/**
 * The ext4 htree ("dx") directory name hash.
 *
 * <p>Behaves like the kernel's {@code ext4fs_dirhash()} in {@code fs/ext4/hash.c} (and e2fsprogs'
 * {@code ext2fs_dirhash()}, except for the end-of-directory remapping described below): given a
 * name, a hash version and the superblock's {@code s_hash_seed}, it produces a 32-bit major hash
 * (used to order and look up entries in the htree index) and a 32-bit minor hash (used to break
 * ties inside {@code readdir} cookies).
 *
 * <p>Hash versions (the values of {@code s_def_hash_version} / {@code dx_root.hash_version}):
 * <ul>
 *   <li>{@link #LEGACY} / {@link #LEGACY_UNSIGNED}: the old "dx_hack_hash"; minor hash is 0 and the
 *       seed is ignored.</li>
 *   <li>{@link #HALF_MD4} / {@link #HALF_MD4_UNSIGNED}: a reduced MD4 over 32-byte chunks; major is
 *       state word 1, minor is state word 2.</li>
 *   <li>{@link #TEA} / {@link #TEA_UNSIGNED}: 16 rounds of TEA over 16-byte chunks; major is state
 *       word 0, minor is state word 1.</li>
 *   <li>{@link #SIPHASH}: only used for casefolded + encrypted directories, keyed by the fscrypt
 *       key; not supported here ({@link UnsupportedOperationException}).</li>
 * </ul>
 * The "unsigned" variants treat name bytes as {@code unsigned char}; the plain variants treat them
 * as {@code signed char}, so bytes {@code >= 0x80} contribute negative values. Which one a
 * filesystem uses is chosen by the caller: the kernel adds 3 to {@code s_def_hash_version} when
 * the superblock flag {@code EXT2_FLAGS_UNSIGNED_HASH} is set (this class does not do that).
 *
 * <p>For casefolded directories the caller must pass the casefolded (normalized) name, as the
 * kernel hashes the casefolded form.
 *
 * <p>Finalization, as in the kernel: the major hash has bit 0 cleared, and a major hash equal to
 * {@code EXT4_HTREE_EOF_32BIT << 1} ({@code 0xFFFFFFFE}) is replaced by
 * {@code (EXT4_HTREE_EOF_32BIT - 1) << 1} ({@code 0xFFFFFFFC}), because {@code 0x7FFFFFFF} (the
 * major hash shifted right by one, as used in 32-bit directory cookies) is reserved as the
 * end-of-directory marker. Note that e2fsprogs ({@code ext2fs_dirhash}, {@code debugfs dx_hash})
 * does <em>not</em> perform this remapping.
 *
 * @see <a href="https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/tree/fs/ext4/hash.c">fs/ext4/hash.c</a>
 */
public final class DxHash {

    public static final int LEGACY = 0, HALF_MD4 = 1, TEA = 2, LEGACY_UNSIGNED = 3,
            HALF_MD4_UNSIGNED = 4, TEA_UNSIGNED = 5, SIPHASH = 6;

    /** {@code EXT4_HTREE_EOF_32BIT}: the largest positive 32-bit value, reserved as directory EOF. */
    static final int HTREE_EOF_32BIT = 0x7FFFFFFF;

    /** Default seed used when {@code s_hash_seed} is all zero (the MD4 initial state). */
    private static final int[] DEFAULT_SEED = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};

    private static final int TEA_DELTA = 0x9E3779B9;
    private static final int MD4_K2 = 0x5A827999; // sqrt(2) * 2^30
    private static final int MD4_K3 = 0x6ED9EBA1; // sqrt(3) * 2^30

    private DxHash() {
    }

    /**
     * Hash of {@code name[off, off+len)}.
     *
     * @param name    the raw name bytes (casefolded already, if the directory is casefolded)
     * @param off     start of the name in {@code name}
     * @param len     number of name bytes (ext4 names are at most 255 bytes; not enforced)
     * @param version hash version, one of {@link #LEGACY} .. {@link #SIPHASH}
     * @param seed    the superblock's {@code s_hash_seed} as 4 ints, each decoded from its
     *                little-endian on-disk form (i.e. the 16 UUID bytes read as 4 LE u32);
     *                {@code null} or all-zero means the default seed
     * @return major hash in the high 32 bits, minor hash in the low 32 bits
     * @throws IllegalArgumentException      for an unknown hash version or a seed whose length is
     *                                       not 4
     * @throws UnsupportedOperationException for {@link #SIPHASH}, which needs the fscrypt key
     * @throws IndexOutOfBoundsException     if {@code [off, off+len)} is not within {@code name}
     */
    public static long hash(byte[] name, int off, int len, int version, int[] seed)
            throws IllegalArgumentException {
        Objects.requireNonNull(name, "name");
        Objects.checkFromIndexSize(off, len, name.length);
        if (seed != null && seed.length != 4) {
            throw new IllegalArgumentException("hash seed must have 4 words, got " + seed.length);
        }

        int[] buf = initialState(seed);
        int major;
        int minor = 0;
        switch (version) {
            case LEGACY:
                major = legacy(name, off, len, true);
                break;
            case LEGACY_UNSIGNED:
                major = legacy(name, off, len, false);
                break;
            case HALF_MD4:
            case HALF_MD4_UNSIGNED: {
                boolean signed = version == HALF_MD4;
                int[] in = new int[8];
                for (int p = off, rem = len; rem > 0; p += 32, rem -= 32) {
                    toHashBuf(name, p, rem, in, 8, signed);
                    halfMd4Transform(buf, in);
                }
                major = buf[1];
                minor = buf[2];
                break;
            }
            case TEA:
            case TEA_UNSIGNED: {
                boolean signed = version == TEA;
                int[] in = new int[4];
                for (int p = off, rem = len; rem > 0; p += 16, rem -= 16) {
                    toHashBuf(name, p, rem, in, 4, signed);
                    teaTransform(buf, in);
                }
                major = buf[0];
                minor = buf[1];
                break;
            }
            case SIPHASH:
                throw new UnsupportedOperationException(
                        "siphash directory hash requires the fscrypt key (casefold + encrypt)");
            default:
                throw new IllegalArgumentException("invalid/unsupported hash tree version " + version);
        }

        major = finishMajor(major);
        return ((long) major << 32) | (minor & 0xFFFFFFFFL);
    }

    /** Convenience: hash of the whole array. */
    public static long hash(byte[] name, int version, int[] seed) {
        return hash(name, 0, name.length, version, seed);
    }

    /** Major hash (high 32 bits) of a value returned by {@link #hash}. */
    public static int major(long h) {
        return (int) (h >>> 32);
    }

    /** Minor hash (low 32 bits) of a value returned by {@link #hash}. */
    public static int minor(long h) {
        return (int) h;
    }

    /** Clears bit 0 and moves the reserved EOF value out of the way, like the kernel. */
    static int finishMajor(int hash) {
        hash &= ~1;
        if (hash == HTREE_EOF_32BIT << 1) {
            hash = (HTREE_EOF_32BIT - 1) << 1;
        }
        return hash;
    }

    private static int[] initialState(int[] seed) {
        if (seed != null) {
            for (int w : seed) {
                if (w != 0) {
                    return seed.clone();
                }
            }
        }
        return DEFAULT_SEED.clone();
    }

    /** dx_hack_hash: the legacy hash. */
    private static int legacy(byte[] name, int off, int len, boolean signed) {
        int h0 = 0x12a3fe2d;
        int h1 = 0x37abe8f9;
        for (int i = 0; i < len; i++) {
            int c = signed ? name[off + i] : name[off + i] & 0xFF;
            int h = h1 + (h0 ^ (c * 7152373));
            if (h < 0) { // top bit set
                h -= 0x7fffffff;
            }
            h1 = h0;
            h0 = h;
        }
        return h0 << 1;
    }

    /**
     * str2hashbuf: packs up to {@code num * 4} bytes of {@code name[p..]} into {@code num} words,
     * big-endian-ish by shifting, starting from and padding with a value derived from the
     * <em>remaining</em> length {@code rem} (not the total name length).
     */
    private static void toHashBuf(byte[] name, int p, int rem, int[] out, int num, boolean signed) {
        int pad = rem | (rem << 8);
        pad |= pad << 16;
        int n = Math.min(rem, num * 4);
        int val = pad;
        int o = 0;
        for (int i = 0; i < n; i++) {
            int c = signed ? name[p + i] : name[p + i] & 0xFF;
            val = c + (val << 8);
            if ((i & 3) == 3) {
                out[o++] = val;
                val = pad;
            }
        }
        if (o < num) {
            out[o++] = val;
        }
        while (o < num) {
            out[o++] = pad;
        }
    }

    private static void teaTransform(int[] buf, int[] in) {
        int sum = 0;
        int b0 = buf[0];
        int b1 = buf[1];
        int a = in[0], b = in[1], c = in[2], d = in[3];
        for (int n = 0; n < 16; n++) {
            sum += TEA_DELTA;
            b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b);
            b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d);
        }
        buf[0] += b0;
        buf[1] += b1;
    }

    private static int f(int x, int y, int z) {
        return z ^ (x & (y ^ z));
    }

    private static int g(int x, int y, int z) {
        return (x & y) + ((x ^ y) & z);
    }

    private static int h(int x, int y, int z) {
        return x ^ y ^ z;
    }

    /** Reduced MD4: three rounds of eight steps over 8 input words. */
    private static void halfMd4Transform(int[] buf, int[] in) {
        int a = buf[0], b = buf[1], c = buf[2], d = buf[3];

        // round 1 (K1 = 0)
        a = Integer.rotateLeft(a + f(b, c, d) + in[0], 3);
        d = Integer.rotateLeft(d + f(a, b, c) + in[1], 7);
        c = Integer.rotateLeft(c + f(d, a, b) + in[2], 11);
        b = Integer.rotateLeft(b + f(c, d, a) + in[3], 19);
        a = Integer.rotateLeft(a + f(b, c, d) + in[4], 3);
        d = Integer.rotateLeft(d + f(a, b, c) + in[5], 7);
        c = Integer.rotateLeft(c + f(d, a, b) + in[6], 11);
        b = Integer.rotateLeft(b + f(c, d, a) + in[7], 19);

        // round 2
        a = Integer.rotateLeft(a + g(b, c, d) + in[1] + MD4_K2, 3);
        d = Integer.rotateLeft(d + g(a, b, c) + in[3] + MD4_K2, 5);
        c = Integer.rotateLeft(c + g(d, a, b) + in[5] + MD4_K2, 9);
        b = Integer.rotateLeft(b + g(c, d, a) + in[7] + MD4_K2, 13);
        a = Integer.rotateLeft(a + g(b, c, d) + in[0] + MD4_K2, 3);
        d = Integer.rotateLeft(d + g(a, b, c) + in[2] + MD4_K2, 5);
        c = Integer.rotateLeft(c + g(d, a, b) + in[4] + MD4_K2, 9);
        b = Integer.rotateLeft(b + g(c, d, a) + in[6] + MD4_K2, 13);

        // round 3
        a = Integer.rotateLeft(a + h(b, c, d) + in[3] + MD4_K3, 3);
        d = Integer.rotateLeft(d + h(a, b, c) + in[7] + MD4_K3, 9);
        c = Integer.rotateLeft(c + h(d, a, b) + in[2] + MD4_K3, 11);
        b = Integer.rotateLeft(b + h(c, d, a) + in[6] + MD4_K3, 15);
        a = Integer.rotateLeft(a + h(b, c, d) + in[1] + MD4_K3, 3);
        d = Integer.rotateLeft(d + h(a, b, c) + in[5] + MD4_K3, 9);
        c = Integer.rotateLeft(c + h(d, a, b) + in[0] + MD4_K3, 11);
        b = Integer.rotateLeft(b + h(c, d, a) + in[4] + MD4_K3, 15);

        buf[0] += a;
        buf[1] += b;
        buf[2] += c;
        buf[3] += d;
    }
}
