package dev.ext4j.dir;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Cross-checks {@link DxHash} against e2fsprogs' {@code debugfs dx_hash}. e2fsprogs is a required
 * test dependency: if {@code debugfs} / {@code mkfs.ext4} cannot be found, the tests fail.
 *
 * <p>Notes on debugfs 1.47.0:
 * <ul>
 *   <li>{@code -h} only knows the names {@code legacy}, {@code half_md4} and {@code tea}; any other
 *       string (e.g. {@code half_md4_unsigned}) silently falls back to {@code atoi()}, i.e. 0 =
 *       legacy. So the hash version is passed numerically ({@code -h 4}).</li>
 *   <li>{@code ext2fs_dirhash} does not do the kernel's EOF remapping (0xFFFFFFFE -> 0xFFFFFFFC),
 *       so expected values from debugfs are remapped here before comparing.</li>
 *   <li>The name is passed after {@code --}: names starting with {@code -} would otherwise be
 *       taken as options by getopt.</li>
 *   <li>Commands are fed through {@code debugfs -f file}, so names can contain arbitrary bytes
 *       (including non-UTF-8 bytes {@code >= 0x80}), which a Java command-line argument cannot.</li>
 * </ul>
 */
class DxHashTest {

    private static final String[] VERSION_NAMES = {
        "legacy", "half_md4", "tea", "legacy_unsigned", "half_md4_unsigned", "tea_unsigned"};

    private static final UUID ZERO_SEED = new UUID(0, 0);

    /** A name whose legacy hash is exactly 0xFFFFFFFE before the kernel's EOF remap (found by search). */
    private static final String EOF_NAME = "eof-k5yz4aI";

    @TempDir
    static Path tmp;

    private static Path image;
    private static String debugfs;
    /** The hash seed mkfs wrote into the image, as printed by dumpe2fs. */
    private static UUID imageSeed;
    /** A fresh random seed per run (shown in the test name for reproduction). */
    private static final UUID RANDOM_SEED = UUID.randomUUID();

    @BeforeAll
    static void makeImage() throws Exception {
        debugfs = findTool("debugfs");
        String mkfs = findTool("mkfs.ext4");
        String dumpe2fs = findTool("dumpe2fs");
        image = tmp.resolve("dxhash.img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(4L << 20);
        }
        Result mk = run(List.of(mkfs, "-q", "-F", image.toString()));
        assertEquals(0, mk.rc, () -> "mkfs.ext4 failed: " + mk.err);

        Result dump = run(List.of(dumpe2fs, "-h", image.toString()));
        assertEquals(0, dump.rc, () -> "dumpe2fs failed: " + dump.err);
        Matcher m = Pattern.compile("(?m)^Directory Hash Seed:\\s+(\\S+)\\s*$").matcher(dump.out);
        assertTrue(m.find(), () -> "no hash seed in dumpe2fs output:\n" + dump.out);
        imageSeed = UUID.fromString(m.group(1));
    }

    // ---------------------------------------------------------------- tool plumbing

    private static String findTool(String name) {
        List<String> dirs = new ArrayList<>();
        String path = System.getenv("PATH");
        if (path != null) {
            dirs.addAll(Arrays.asList(path.split(java.io.File.pathSeparator)));
        }
        dirs.addAll(List.of("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"));
        for (String d : dirs) {
            if (d.isEmpty()) {
                continue;
            }
            Path p = Path.of(d, name);
            if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                return p.toString();
            }
        }
        return fail(name + " not found (e2fsprogs is a required test dependency; install e2fsprogs)");
    }

    private record Result(int rc, String out, String err) {
    }

    /** Runs a command; stdout is decoded as ISO-8859-1 so that raw name bytes survive 1:1. */
    private static Result run(List<String> cmd) throws IOException, InterruptedException {
        Path out = Files.createTempFile(tmp, "out", ".txt");
        Path err = Files.createTempFile(tmp, "err", ".txt");
        ProcessBuilder pb = new ProcessBuilder(cmd)
                .redirectOutput(out.toFile())
                .redirectError(err.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().put("LC_ALL", "C");
        pb.environment().remove("DEBUGFS_PAGER");
        pb.environment().put("PAGER", "__none__");
        Process p = pb.start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("timeout running " + cmd);
        }
        return new Result(p.exitValue(),
                new String(Files.readAllBytes(out), StandardCharsets.ISO_8859_1),
                new String(Files.readAllBytes(err), StandardCharsets.ISO_8859_1));
    }

    /** DOTALL: names decoded as ISO-8859-1 may contain U+0085, a line terminator for '.'. */
    private static final Pattern HASH_LINE = Pattern.compile(
            "^Hash of (.*) is 0x([0-9a-f]+) \\(minor 0x([0-9a-f]+)\\)$", Pattern.DOTALL);

    /**
     * Hashes every name with {@code debugfs dx_hash -h version -s seed}, in one debugfs run.
     * Returns per name {major, minor} exactly as e2fsprogs computes them.
     */
    private static long[][] debugfsHashes(List<byte[]> names, int version, UUID seed) throws Exception {
        ByteArrayOutputStream cmds = new ByteArrayOutputStream();
        for (byte[] name : names) {
            cmds.writeBytes(("dx_hash -h " + version + " -s " + seed + " -- ").getBytes(StandardCharsets.US_ASCII));
            cmds.writeBytes(name);
            cmds.write('\n');
        }
        Path cmdFile = Files.createTempFile(tmp, "cmds", ".txt");
        Files.write(cmdFile, cmds.toByteArray());
        Result r = run(List.of(debugfs, "-f", cmdFile.toString(), image.toString()));
        assertEquals(0, r.rc, () -> "debugfs failed: " + r.err);

        long[][] res = new long[names.size()][];
        int i = 0;
        for (String line : r.out.split("\n")) {
            Matcher m = HASH_LINE.matcher(line);
            if (!m.matches()) {
                continue;
            }
            assertTrue(i < names.size(), "more hash lines than commands");
            // debugfs echoes the name it hashed: make sure it got exactly our bytes.
            byte[] seen = m.group(1).getBytes(StandardCharsets.ISO_8859_1);
            final int idx = i;
            assertArrayEquals(names.get(i), seen, () -> "debugfs saw a different name for command " + idx
                    + ": sent " + show(names.get(idx)) + ", debugfs hashed " + show(seen));
            res[i++] = new long[] {Long.parseLong(m.group(2), 16), Long.parseLong(m.group(3), 16)};
        }
        final int got = i;
        assertEquals(names.size(), got, () -> "debugfs printed " + got + " hashes for " + names.size()
                + " names; stderr:\n" + r.err);
        return res;
    }

    /** The superblock stores s_hash_seed as the 16 UUID bytes; the kernel reads them as 4 LE u32. */
    static int[] seedWords(UUID uuid) {
        ByteBuffer be = ByteBuffer.allocate(16);
        be.putLong(uuid.getMostSignificantBits()).putLong(uuid.getLeastSignificantBits());
        ByteBuffer le = ByteBuffer.wrap(be.array()).order(ByteOrder.LITTLE_ENDIAN);
        return new int[] {le.getInt(0), le.getInt(4), le.getInt(8), le.getInt(12)};
    }

    // ---------------------------------------------------------------- names

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Bytes that are safe as part of a single debugfs command-line word. */
    private static boolean safeByte(int b) {
        return b != 0 && b != '/' && b != ' ' && b != '"' && b != '\\' && b != '#' && b != '\''
                && !(b >= 0x09 && b <= 0x0d);
    }

    static List<byte[]> testNames() {
        List<byte[]> names = new ArrayList<>();
        for (String s : List.of("a", ".", "..", "lost+found", "hello", "Makefile", "README.md",
                "héllo", "Ünïcödé-ñame", "日本語のファイル名", "😀.txt", "ÿ", "€uro", "-rf", "--", EOF_NAME)) {
            names.add(utf8(s));
        }
        // raw latin-1 / non-UTF-8 bytes
        names.add(new byte[] {'h', (byte) 0xe9, 'l', 'l', 'o'});
        names.add(new byte[] {(byte) 0xff});
        names.add(new byte[] {(byte) 0x80});
        names.add(new byte[] {(byte) 0x80, (byte) 0x81, (byte) 0xfe, (byte) 0xff});

        Random rnd = new Random(0x2b5d_1e4aL);
        // every length 1..255, printable ASCII
        for (int len = 1; len <= 255; len++) {
            byte[] n = new byte[len];
            for (int i = 0; i < len; i++) {
                int b;
                do {
                    b = 0x21 + rnd.nextInt(0x7f - 0x21);
                } while (!safeByte(b));
                n[i] = (byte) b;
            }
            names.add(n);
        }
        // every length 1..255, arbitrary bytes (mostly >= 0x80 so signedness matters in every chunk)
        for (int len = 1; len <= 255; len++) {
            byte[] n = new byte[len];
            for (int i = 0; i < len; i++) {
                int b;
                do {
                    b = rnd.nextInt(4) == 0 ? 1 + rnd.nextInt(0x7f) : 0x80 + rnd.nextInt(0x80);
                } while (!safeByte(b));
                n[i] = (byte) b;
            }
            names.add(n);
        }
        // UTF-8 names around the 16/32-byte chunk boundaries
        for (int len : new int[] {15, 16, 17, 31, 32, 33, 63, 64, 65, 254, 255}) {
            StringBuilder sb = new StringBuilder();
            while (utf8(sb.toString()).length < len - 1) {
                sb.append(sb.length() % 3 == 0 ? "é" : "x");
            }
            while (utf8(sb.toString()).length < len) {
                sb.append('z');
            }
            byte[] n = utf8(sb.toString());
            assertEquals(len, n.length);
            names.add(n);
        }
        return names;
    }

    static Stream<Arguments> versionsAndSeeds() {
        List<Arguments> args = new ArrayList<>();
        for (int v = 0; v < VERSION_NAMES.length; v++) {
            for (String seed : List.of("zero", "image", "random")) {
                args.add(Arguments.of(v, VERSION_NAMES[v], seed));
            }
        }
        return args.stream();
    }

    private static UUID seedFor(String which) {
        switch (which) {
            case "zero":
                return ZERO_SEED;
            case "image":
                return imageSeed;
            case "random":
                return RANDOM_SEED;
            default:
                throw new IllegalArgumentException(which);
        }
    }

    private static String show(byte[] name) {
        StringBuilder sb = new StringBuilder();
        for (byte b : name) {
            int c = b & 0xff;
            if (c >= 0x21 && c < 0x7f) {
                sb.append((char) c);
            } else {
                sb.append(String.format("\\x%02x", c));
            }
        }
        return sb.toString();
    }

    // ---------------------------------------------------------------- tests

    @ParameterizedTest(name = "{1} seed={2}")
    @MethodSource("versionsAndSeeds")
    void matchesDebugfs(int version, String versionName, String seedName) throws Exception {
        UUID seedUuid = seedFor(seedName);
        int[] seed = seedWords(seedUuid);
        List<byte[]> names = testNames();
        long[][] expected = debugfsHashes(names, version, seedUuid);

        List<String> mismatches = new ArrayList<>();
        int nonTrivial = 0;
        for (int i = 0; i < names.size(); i++) {
            byte[] name = names.get(i);
            int expMajor = (int) expected[i][0];
            int expMinor = (int) expected[i][1];
            // e2fsprogs does not remap the reserved EOF hash; the kernel does.
            if (expMajor == 0xFFFFFFFE) {
                expMajor = 0xFFFFFFFC;
            }
            if (expMajor != 0 && expMajor != 0xFFFFFFFC) {
                nonTrivial++;
            }
            long h = DxHash.hash(name, 0, name.length, version, seed);
            if (DxHash.major(h) != expMajor || DxHash.minor(h) != expMinor) {
                mismatches.add(String.format("%s (len %d): expected %08x/%08x, got %08x/%08x",
                        show(name), name.length, expMajor, expMinor, DxHash.major(h), DxHash.minor(h)));
            }
        }
        assertTrue(nonTrivial > names.size() / 2, "debugfs produced suspiciously trivial hashes");
        if (!mismatches.isEmpty()) {
            fail(mismatches.size() + " of " + names.size() + " names differ from debugfs (" + versionName
                    + ", seed " + seedUuid + "), e.g.:\n  "
                    + String.join("\n  ", mismatches.subList(0, Math.min(10, mismatches.size()))));
        }
    }

    /** Known answers captured from debugfs 1.47.0, so the test also fails on a broken debugfs run. */
    @Test
    void knownAnswers() {
        int[] zero = {0, 0, 0, 0};
        long h = DxHash.hash(utf8("hello"), DxHash.HALF_MD4, zero);
        assertEquals(0x1746da32, DxHash.major(h));
        assertEquals(0x420013b5, DxHash.minor(h));

        byte[] helloLatin1 = {'h', (byte) 0xe9, 'l', 'l', 'o'};
        assertEquals(0xa45a86cc, DxHash.major(DxHash.hash(helloLatin1, DxHash.LEGACY, zero)));
        assertEquals(0xa38098d0, DxHash.major(DxHash.hash(helloLatin1, DxHash.LEGACY_UNSIGNED, zero)));
        assertEquals(0, DxHash.minor(DxHash.hash(helloLatin1, DxHash.LEGACY, zero)));

        int[] seed = seedWords(UUID.fromString("5d2ba8a4-0e6f-4b43-9cfc-6a0ec1d5e9b3"));
        h = DxHash.hash(utf8("a"), DxHash.TEA_UNSIGNED, seed);
        assertEquals(0x01b8a6ec, DxHash.major(h));
        assertEquals(0x32b22ce6, DxHash.minor(h));

        byte[] hello = utf8("héllo");
        assertEquals(0x98e030c8, DxHash.major(DxHash.hash(hello, DxHash.HALF_MD4, zero)));
        assertEquals(0xe189ee6e, DxHash.minor(DxHash.hash(hello, DxHash.HALF_MD4, zero)));
        assertEquals(0xa5c67250, DxHash.major(DxHash.hash(hello, DxHash.HALF_MD4_UNSIGNED, zero)));
        assertEquals(0x6cd261bb, DxHash.minor(DxHash.hash(hello, DxHash.HALF_MD4_UNSIGNED, zero)));
        assertEquals(0x313ecf7e, DxHash.major(DxHash.hash(hello, DxHash.TEA, zero)));
        assertEquals(0xedbe6b7e, DxHash.minor(DxHash.hash(hello, DxHash.TEA, zero)));
        assertEquals(0x7472d1be, DxHash.major(DxHash.hash(hello, DxHash.TEA_UNSIGNED, zero)));
        assertEquals(0x99e4e95b, DxHash.minor(DxHash.hash(hello, DxHash.TEA_UNSIGNED, zero)));
    }

    @Test
    void signedAndUnsignedDifferForHighBytes() {
        int[] seed = seedWords(RANDOM_SEED);
        for (byte[] name : List.of(utf8("héllo"), utf8("日本語"), new byte[] {(byte) 0xff},
                utf8("x".repeat(40) + "é"))) {
            for (int v = 0; v < 3; v++) {
                long signed = DxHash.hash(name, v, seed);
                long unsigned = DxHash.hash(name, v + 3, seed);
                assertNotEquals(signed, unsigned, VERSION_NAMES[v] + " vs unsigned for " + show(name));
            }
        }
        // ... and agree for pure ASCII names
        for (byte[] name : List.of(utf8("lost+found"), utf8("a"), utf8("y".repeat(255)))) {
            for (int v = 0; v < 3; v++) {
                assertEquals(DxHash.hash(name, v, seed), DxHash.hash(name, v + 3, seed));
            }
        }
    }

    @Test
    void eofHashIsRemappedLikeTheKernel() throws Exception {
        byte[] name = utf8(EOF_NAME);
        // e2fsprogs reports the raw value, confirming this name hits EXT4_HTREE_EOF_32BIT << 1 ...
        long[][] dbg = debugfsHashes(List.of(name, name), DxHash.LEGACY, ZERO_SEED);
        assertEquals(0xFFFFFFFEL, dbg[0][0]);
        // ... which the kernel (and DxHash) move to (EXT4_HTREE_EOF_32BIT - 1) << 1.
        assertEquals(0xFFFFFFFC, DxHash.major(DxHash.hash(name, DxHash.LEGACY, null)));
        assertEquals(0xFFFFFFFC, DxHash.major(DxHash.hash(name, DxHash.LEGACY_UNSIGNED, null)));

        assertEquals(0xFFFFFFFC, DxHash.finishMajor(0xFFFFFFFE));
        assertEquals(0xFFFFFFFC, DxHash.finishMajor(0xFFFFFFFF));
        assertEquals(0xFFFFFFFC, DxHash.finishMajor(0xFFFFFFFC));
        assertEquals(0xFFFFFFFC, DxHash.finishMajor(0xFFFFFFFD));
        assertEquals(0x7FFFFFFE, DxHash.finishMajor(0x7FFFFFFF));
        assertEquals(0, DxHash.finishMajor(1));
    }

    @Test
    void imageSeedConversionMatchesSuperblock() throws Exception {
        // s_hash_seed lives at superblock offset 0xEC (superblock at byte 1024), 4 x __le32.
        byte[] sb = new byte[1024];
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "r")) {
            f.seek(1024);
            f.readFully(sb);
        }
        ByteBuffer le = ByteBuffer.wrap(sb).order(ByteOrder.LITTLE_ENDIAN);
        int[] onDisk = {le.getInt(0xEC), le.getInt(0xF0), le.getInt(0xF4), le.getInt(0xF8)};
        assertEquals(0xEF53, le.getShort(0x38) & 0xffff, "ext2/3/4 magic");
        assertArrayEquals(onDisk, seedWords(imageSeed));
        assertTrue(Arrays.stream(onDisk).anyMatch(w -> w != 0), "mkfs should write a non-zero seed");
    }

    @Test
    void zeroSeedMeansDefaultSeed() {
        byte[] name = utf8("some-file.txt");
        int[] def = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
        for (int v : new int[] {DxHash.HALF_MD4, DxHash.TEA, DxHash.HALF_MD4_UNSIGNED, DxHash.TEA_UNSIGNED}) {
            long expected = DxHash.hash(name, v, def);
            assertEquals(expected, DxHash.hash(name, v, new int[4]));
            assertEquals(expected, DxHash.hash(name, v, null));
            assertNotEquals(expected, DxHash.hash(name, v, new int[] {0, 0, 0, 1}));
        }
        // the caller's seed array is not modified
        int[] seed = seedWords(RANDOM_SEED);
        int[] copy = seed.clone();
        DxHash.hash(name, DxHash.HALF_MD4, seed);
        assertArrayEquals(copy, seed);
    }

    @Test
    void subrangeAndEmptyName() {
        byte[] buf = utf8("XXXlost+foundYYY");
        int[] seed = seedWords(RANDOM_SEED);
        for (int v = 0; v < 6; v++) {
            assertEquals(DxHash.hash(utf8("lost+found"), v, seed), DxHash.hash(buf, 3, 10, v, seed));
        }
        // empty name: nothing is mixed in, the result comes from the (seed) state only
        assertEquals(0x12a3fe2d << 1, DxHash.major(DxHash.hash(new byte[0], DxHash.LEGACY, null)));
        long tea = DxHash.hash(new byte[0], DxHash.TEA, null);
        assertEquals(0x67452300, DxHash.major(tea));
        assertEquals(0xefcdab89, DxHash.minor(tea));
        long md4 = DxHash.hash(new byte[0], DxHash.HALF_MD4, null);
        assertEquals(0xefcdab88, DxHash.major(md4));
        assertEquals(0x98badcfe, DxHash.minor(md4));
        assertThrows(IndexOutOfBoundsException.class, () -> DxHash.hash(buf, 10, 10, DxHash.TEA, null));
    }

    @Test
    void unsupportedVersions() {
        byte[] name = utf8("x");
        assertThrows(UnsupportedOperationException.class, () -> DxHash.hash(name, DxHash.SIPHASH, null));
        for (int v : new int[] {-1, 7, 8, 255, Integer.MAX_VALUE}) {
            assertThrows(IllegalArgumentException.class, () -> DxHash.hash(name, v, null));
        }
        assertThrows(IllegalArgumentException.class, () -> DxHash.hash(name, DxHash.TEA, new int[3]));
    }
}
