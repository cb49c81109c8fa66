package dev.ext4j.testutil;

import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Makes and inspects ext4 images with the e2fsprogs tools (mkfs.ext4, debugfs, e2fsck, dumpe2fs).
 * A missing tool fails the test loudly: these tests are the point of the suite, never skipped.
 */
public final class Images {
    private static final Map<String, Path> TOOLS = new HashMap<>();
    private static final long TIMEOUT_SECONDS = 120;

    private Images() {
    }

    /** Output of a finished process. */
    public record Result(int exitCode, String stdout, String stderr) {
        public String all() {
            return stdout + stderr;
        }
    }

    /** The executable {@code name} from PATH, /sbin or /usr/sbin; throws when absent. */
    public static synchronized Path tool(String name) {
        Path p = TOOLS.get(name);
        if (p != null) {
            return p;
        }
        List<String> dirs = new ArrayList<>();
        String path = System.getenv("PATH");
        if (path != null) {
            dirs.addAll(Arrays.asList(path.split(":")));
        }
        dirs.addAll(List.of("/sbin", "/usr/sbin", "/bin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"));
        for (String d : dirs) {
            if (d.isEmpty()) {
                continue;
            }
            Path c = Path.of(d, name);
            if (Files.isRegularFile(c) && Files.isExecutable(c)) {
                TOOLS.put(name, c);
                return c;
            }
        }
        throw new IllegalStateException("required tool '" + name + "' not found in PATH, /sbin or /usr/sbin;"
                + " install e2fsprogs (mkfs.ext4, debugfs, e2fsck, dumpe2fs) and attr (setfattr)");
    }

    /** Runs a command (first element is a tool name or path) and waits for it. */
    public static Result run(List<String> cmd) {
        return run(cmd, null);
    }

    public static Result run(List<String> cmd, Path workDir) {
        List<String> full = new ArrayList<>(cmd);
        if (!full.get(0).contains("/")) {
            full.set(0, tool(full.get(0)).toString());
        }
        ProcessBuilder pb = new ProcessBuilder(full);
        if (workDir != null) {
            pb.directory(workDir.toFile());
        }
        pb.environment().put("LC_ALL", "C");
        // debugfs and e2fsck consult these; keep the images' timestamps out of it
        pb.environment().remove("E2FSPROGS_FAKE_TIME");
        try {
            Process p = pb.start();
            p.getOutputStream().close();
            CompletableFuture<String> out = readAsync(p.getInputStream());
            CompletableFuture<String> err = readAsync(p.getErrorStream());
            if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timed out: " + full);
            }
            return new Result(p.exitValue(), out.join(), err.join());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + full, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted: " + full, e);
        }
    }

    private static CompletableFuture<String> readAsync(InputStream in) {
        return CompletableFuture.supplyAsync(() -> {
            try (in) {
                return new String(in.readAllBytes(), StandardCharsets.ISO_8859_1);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** Runs and requires exit code 0. */
    public static Result runOk(List<String> cmd) {
        Result r = run(cmd);
        if (r.exitCode() != 0) {
            throw new IllegalStateException(cmd + " exited with " + r.exitCode() + ":\n" + r.all());
        }
        return r;
    }

    /**
     * {@code mkfs.ext4 -q -F [args] [-d srcDir] img size}. The image is a sparse file. When
     * {@code srcDir} is null the filesystem is empty.
     */
    public static Path mkfs(Path img, String sizeSpec, List<String> mkfsArgs, Path srcDir) {
        List<String> cmd = new ArrayList<>(List.of("mkfs.ext4", "-q", "-F"));
        cmd.addAll(mkfsArgs);
        if (srcDir != null) {
            cmd.add("-d");
            cmd.add(srcDir.toString());
        }
        cmd.add(img.toString());
        cmd.add(sizeSpec);
        Result r = run(cmd);
        if (r.exitCode() != 0 || !Files.exists(img)) {
            throw new IllegalStateException("mkfs failed (" + r.exitCode() + "): " + cmd + "\n" + r.all());
        }
        // mkfs.ext4 reports copy failures of -d on stderr while still exiting 0 in some versions
        for (String line : r.stderr().split("\n")) {
            String l = line.trim();
            if (!l.isEmpty() && !l.startsWith("mke2fs ") && !l.startsWith("Warning: ") && !l.startsWith("Creating regular file")) {
                throw new IllegalStateException("mkfs said: " + l + "\n" + r.all());
            }
        }
        return img;
    }

    /** Writes {@code cmds} to a command file and runs {@code debugfs -w -f cmdfile img}; fails on any error output. */
    public static String debugfs(Path img, String... cmds) {
        return debugfsCmds(img, true, List.of(cmds));
    }

    /** Read-only variant: {@code debugfs -f cmdfile img}. */
    public static String debugfsRead(Path img, String... cmds) {
        return debugfsCmds(img, false, List.of(cmds));
    }

    public static String debugfsCmds(Path img, boolean write, List<String> cmds) {
        return debugfsCmds(img, write, cmds, true);
    }

    /**
     * Read-only debugfs that tolerates messages on stderr (some commands, like htree on a
     * filesystem without metadata_csum, complain about checksums they cannot compute).
     */
    public static String debugfsLenient(Path img, String... cmds) {
        return debugfsCmds(img, false, List.of(cmds), false);
    }

    private static String debugfsCmds(Path img, boolean write, List<String> cmds, boolean strict) {
        try {
            Path cmdFile = Files.createTempFile(img.toAbsolutePath().getParent(), "debugfs", ".cmd");
            try {
                Files.writeString(cmdFile, String.join("\n", cmds) + "\n", StandardCharsets.ISO_8859_1);
                List<String> cmd = new ArrayList<>(List.of("debugfs"));
                if (write) {
                    cmd.add("-w");
                }
                cmd.addAll(List.of("-f", cmdFile.toString(), img.toString()));
                Result r = run(cmd);
                List<String> errors = new ArrayList<>();
                for (String line : r.stderr().split("\n")) {
                    String l = line.trim();
                    if (!l.isEmpty() && !l.startsWith("debugfs ")) {
                        errors.add(l);
                    }
                }
                if (r.exitCode() != 0 || strict && !errors.isEmpty()) {
                    throw new IllegalStateException("debugfs " + cmds + " failed (" + r.exitCode() + "): " + String.join("\n", errors)
                            + "\n" + r.stdout());
                }
                // with -f, debugfs echoes each command as "debugfs: cmd"; drop those lines
                StringBuilder out = new StringBuilder();
                for (String line : r.stdout().split("\n", -1)) {
                    if (!line.startsWith("debugfs: ")) {
                        out.append(line).append('\n');
                    }
                }
                return out.toString();
            } finally {
                Files.deleteIfExists(cmdFile);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * e2fsck's notes about the clock ("Superblock last write time is in the future", "(by less than
     * a day, ...)"): they say the host clock stepped back since the image was written, not that
     * anything in the image is wrong, and e2fsck -n exits 0 after them.
     */
    public static boolean isClockNote(String line) {
        String l = line.trim();
        return l.matches("Superblock last (mount|write) time is in the future\\.?.*")
                || l.startsWith("(by less than a day, probably due to the hardware clock being incorrectly set)");
    }

    /** {@code e2fsck -fn img}: exit code 0 means clean. */
    public static Result fsckCheck(Path img) {
        return run(List.of("e2fsck", "-fn", img.toString()));
    }

    /** Asserts that {@code e2fsck -fn} finds nothing to fix. */
    public static void assertClean(Path img) {
        Result r = fsckCheck(img);
        if (r.exitCode() != 0) {
            throw new AssertionError("e2fsck -fn " + img + " exited " + r.exitCode() + ":\n" + r.all());
        }
    }

    /**
     * {@code e2fsck -fn} exits 0 and says nothing beyond the pass headers, the summary, clock notes
     * and lines matching one of {@code alsoAllowed} (regular expressions).
     */
    public static void assertSilentlyClean(Path img, String... alsoAllowed) {
        Result r = fsckCheck(img);
        List<String> odd = new java.util.ArrayList<>();
        for (String line : r.all().split("\n")) {
            String l = line.trim();
            if (l.isEmpty() || l.startsWith("Pass ") || l.startsWith("e2fsck ") || isClockNote(l)
                    || l.matches(".*: \\d+/\\d+ files \\(.*\\), \\d+/\\d+ blocks")
                    || java.util.Arrays.stream(alsoAllowed).anyMatch(l::matches)) {
                continue;
            }
            odd.add(l);
        }
        if (r.exitCode() != 0 || !odd.isEmpty()) {
            throw new AssertionError("e2fsck -fn " + img + " exited " + r.exitCode() + ":\n" + r.all());
        }
    }

    /** {@code e2fsck -fyD img}: rebuilds (and so indexes) every directory. Exit codes 0 and 1 are fine. */
    public static void fsckOptimizeDirs(Path img) {
        Result r = run(List.of("e2fsck", "-fyD", img.toString()));
        if (r.exitCode() > 1) {
            throw new IllegalStateException("e2fsck -fyD exited " + r.exitCode() + ":\n" + r.all());
        }
    }

    /** {@code dumpe2fs -h} as "Key" to "value" (first occurrence wins). */
    public static Map<String, String> dumpe2fsHeader(Path img) {
        Result r = runOk(List.of("dumpe2fs", "-h", img.toString()));
        return parseHeader(r.stdout());
    }

    /** Full {@code dumpe2fs} output. */
    public static String dumpe2fs(Path img) {
        return runOk(List.of("dumpe2fs", img.toString())).stdout();
    }

    static Map<String, String> parseHeader(String text) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            int c = line.indexOf(':');
            if (c <= 0) {
                continue;
            }
            String k = line.substring(0, c).trim();
            String v = line.substring(c + 1).trim();
            m.putIfAbsent(k, v);
        }
        return m;
    }

    /** Inode number of {@code path} in the image (debugfs stat). */
    public static long inodeOf(Path img, String path) {
        String out = debugfsRead(img, "stat \"" + path + "\"");
        Matcher m = Pattern.compile("Inode: (\\d+)").matcher(out);
        if (!m.find()) {
            throw new IllegalStateException("no inode for " + path + ": " + out);
        }
        return Long.parseLong(m.group(1));
    }

    /** debugfs stat output of {@code spec} (a path or {@code <ino>}). */
    public static String stat(Path img, String spec) {
        return debugfsRead(img, "stat " + spec);
    }

    /** Physical blocks of a file in logical order (debugfs blocks). */
    public static List<Long> blocks(Path img, String path) {
        String out = debugfsRead(img, "blocks \"" + path + "\"").trim();
        List<Long> blocks = new ArrayList<>();
        if (!out.isEmpty()) {
            for (String s : out.split("\\s+")) {
                blocks.add(Long.parseLong(s));
            }
        }
        return blocks;
    }

    /** Byte offset in the image of inode {@code spec}'s on-disk record (debugfs imap). */
    public static long inodeByteOffset(Path img, String spec, int blockSize) {
        String out = debugfsRead(img, "imap " + spec);
        Matcher m = Pattern.compile("located at block (\\d+), offset 0x([0-9a-fA-F]+)").matcher(out);
        if (!m.find()) {
            throw new IllegalStateException("imap " + spec + ": " + out);
        }
        return Long.parseLong(m.group(1)) * blockSize + Long.parseLong(m.group(2), 16);
    }

    /** The value after "{@code key}:" in debugfs stat output, e.g. "File ACL". */
    public static long statNumber(String statOutput, String key) {
        Matcher m = Pattern.compile(Pattern.quote(key) + ":\\s*(-?\\d+)").matcher(statOutput);
        if (!m.find()) {
            throw new IllegalStateException("no " + key + " in " + statOutput);
        }
        return Long.parseLong(m.group(1));
    }

    public static void writeAt(Path img, long offset, byte[] bytes) {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.seek(offset);
            f.write(bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static byte[] readAt(Path img, long offset, int len) {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            byte[] b = new byte[len];
            f.seek(offset);
            f.readFully(b);
            return b;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static void writeLe16(Path img, long offset, int v) {
        writeAt(img, offset, new byte[] {(byte) v, (byte) (v >>> 8)});
    }

    public static void writeLe32(Path img, long offset, int v) {
        writeAt(img, offset, new byte[] {(byte) v, (byte) (v >>> 8), (byte) (v >>> 16), (byte) (v >>> 24)});
    }

    public static int readLe16(Path img, long offset) {
        byte[] b = readAt(img, offset, 2);
        return (b[0] & 0xFF) | (b[1] & 0xFF) << 8;
    }

    public static int readLe32(Path img, long offset) {
        byte[] b = readAt(img, offset, 4);
        return (b[0] & 0xFF) | (b[1] & 0xFF) << 8 | (b[2] & 0xFF) << 16 | (b[3] & 0xFF) << 24;
    }

    /** Copies an image keeping it sparse. */
    public static Path copy(Path from, Path to) {
        runOk(List.of("cp", "--sparse=always", from.toString(), to.toString()));
        return to;
    }

    /** SHA-256 of a file, hex. */
    public static String sha256(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 20];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
            StringBuilder sb = new StringBuilder();
            for (byte b : md.digest()) {
                sb.append(String.format("%02x", b));
            }
            return sb.toString();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** {@code setfattr -n name -v 0xHEX path}. */
    public static void setXattr(Path file, String name, byte[] value) {
        StringBuilder hex = new StringBuilder("0x");
        for (byte b : value) {
            hex.append(String.format("%02x", b));
        }
        runOk(List.of("setfattr", "-h", "-n", name, "-v", hex.toString(), file.toString()));
    }

    /** {@code getfattr -n name -e hex}: the value, or null when the file has no such attribute. */
    public static byte[] getXattr(Path file, String name) {
        Result r = run(List.of("getfattr", "-h", "--absolute-names", "-n", name, "-e", "hex", file.toString()));
        if (r.exitCode() != 0) {
            return null;
        }
        Matcher m = Pattern.compile(Pattern.quote(name) + "=0x([0-9a-fA-F]*)").matcher(r.stdout());
        if (!m.find()) {
            return null;
        }
        return hex(m.group(1));
    }

    public static byte[] hex(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }
}
