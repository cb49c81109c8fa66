package dev.ext4j.it;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * External commands (with timeouts and captured output) and the e2fsprogs helpers the tests need.
 * Every command runs as a child process, so a hung FUSE operation blocks a child that can be killed,
 * never the test JVM.
 */
public final class Tools {
    /** Default timeout for short commands (ls, stat, getfattr...). */
    public static final Duration SHORT = Duration.ofSeconds(30);
    /** Timeout for mkfs/e2fsck/debugfs on the test images. */
    public static final Duration LONG = Duration.ofMinutes(5);

    private Tools() {
    }

    /** The outcome of one command. */
    public record Result(List<String> command, int exitCode, String stdout, String stderr, boolean timedOut, Duration elapsed) {
        public boolean ok() {
            return exitCode == 0 && !timedOut;
        }

        /** Output of both streams, for messages. */
        public String output() {
            return (stdout + (stdout.isEmpty() || stdout.endsWith("\n") ? "" : "\n") + stderr).strip();
        }

        /** Throws with the full command, exit code and output unless the command exited 0. */
        public Result requireOk() {
            if (!ok()) {
                throw new AssertionError(describe());
            }
            return this;
        }

        public String describe() {
            return "command " + String.join(" ", command) + (timedOut ? " timed out after " + elapsed.toMillis() + " ms" : " exited " + exitCode)
                    + "\n--- stdout ---\n" + abbreviate(stdout, 8000) + "\n--- stderr ---\n" + abbreviate(stderr, 8000);
        }
    }

    static String abbreviate(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max) + "\n... (" + (s.length() - max) + " more characters)";
    }

    /** Runs a command with the given timeout and environment overrides (null value removes a variable). */
    public static Result run(Duration timeout, Map<String, String> env, Path dir, List<String> command) {
        ProcessBuilder pb = new ProcessBuilder(command);
        if (dir != null) {
            pb.directory(dir.toFile());
        }
        if (env != null) {
            for (Map.Entry<String, String> e : env.entrySet()) {
                if (e.getValue() == null) {
                    pb.environment().remove(e.getKey());
                } else {
                    pb.environment().put(e.getKey(), e.getValue());
                }
            }
        }
        pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        long start = System.nanoTime();
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            return new Result(List.copyOf(command), 127, "", "cannot start: " + e.getMessage(), false, Duration.ZERO);
        }
        // Pump both streams on their own threads: a full pipe must never stall the child.
        StreamPump out = new StreamPump(p.getInputStream());
        StreamPump err = new StreamPump(p.getErrorStream());
        boolean timedOut = false;
        try {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                timedOut = true;
                killTree(p.toHandle());
                p.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            killTree(p.toHandle());
            Thread.currentThread().interrupt();
            timedOut = true;
        }
        // A grandchild that inherited the pipes (e.g. a daemon) may keep them open: do not wait forever.
        String o = out.result(Duration.ofSeconds(5));
        String e = err.result(Duration.ofSeconds(5));
        int rc = p.isAlive() ? -1 : p.exitValue();
        return new Result(List.copyOf(command), rc, o, e, timedOut, Duration.ofNanos(System.nanoTime() - start));
    }

    public static Result run(Duration timeout, List<String> command) {
        return run(timeout, null, null, command);
    }

    public static Result run(Duration timeout, String... command) {
        return run(timeout, null, null, List.of(command));
    }

    /** {@code bash -c script} with positional arguments $1, $2, ... */
    public static Result bash(Duration timeout, String script, String... args) {
        List<String> cmd = new ArrayList<>(List.of("bash", "-c", script, "bash"));
        cmd.addAll(List.of(args));
        return run(timeout, cmd);
    }

    /** Kills a process and everything it started (only processes this test started). */
    static void killTree(ProcessHandle h) {
        h.descendants().forEach(ProcessHandle::destroyForcibly);
        h.destroyForcibly();
    }

    private static final class StreamPump {
        private final Thread thread;
        private final StringBuilder buf = new StringBuilder();
        private static final int MAX = 16 << 20;

        StreamPump(InputStream in) {
            thread = new Thread(() -> {
                char[] b = new char[8192];
                // a reader, not each read's bytes decoded alone: a UTF-8 character split across
                // two reads came out as two U+FFFD (a file name differed from the kernel's once)
                try (java.io.Reader r = new java.io.InputStreamReader(in, StandardCharsets.UTF_8)) {
                    int n;
                    while ((n = r.read(b)) > 0) {
                        synchronized (buf) {
                            if (buf.length() < MAX) {
                                buf.append(b, 0, n);
                            }
                        }
                    }
                } catch (IOException e) {
                    // process gone
                }
            }, "pump");
            thread.setDaemon(true);
            thread.start();
        }

        String result(Duration wait) {
            try {
                thread.join(wait.toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            synchronized (buf) {
                return buf.toString();
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // e2fsprogs

    /** {@code mkfs.ext4 -q -F [extra] -d SRC IMG SIZE}; src may be null for an empty filesystem. */
    public static Result mkfs(Path src, Path image, String size, List<String> extra) {
        List<String> cmd = new ArrayList<>(List.of("mkfs.ext4", "-q", "-F"));
        cmd.addAll(extra);
        if (src != null) {
            cmd.add("-d");
            cmd.add(src.toString());
        }
        cmd.add(image.toString());
        cmd.add(size);
        return run(LONG, cmd).requireOk();
    }

    /** {@code e2fsck -fn IMG}; requires exit 0 (clean) and returns the output. */
    public static String e2fsckClean(Path image) {
        return run(LONG, "e2fsck", "-fn", image.toString()).requireOk().output();
    }

    /** {@code e2fsck -fyD IMG}: fixes and re-indexes directories (exit 0 or 1 are fine). */
    public static String e2fsckOptimizeDirs(Path image) {
        Result r = run(LONG, "e2fsck", "-fyD", image.toString());
        if (r.timedOut() || r.exitCode() > 1) {
            throw new AssertionError(r.describe());
        }
        return r.output();
    }

    /** Runs debugfs requests read-only ({@code debugfs -R REQ IMG}) and returns stdout; fails on a non-zero exit. */
    public static String debugfs(Path image, String request) {
        Result r = run(LONG, "debugfs", "-R", request, image.toString()).requireOk();
        return r.stdout();
    }

    /** Runs a debugfs command file in write mode ({@code debugfs -w -f FILE IMG}) and returns the output. */
    public static String debugfsWrite(Path image, String... requests) {
        try {
            Path f = Files.createTempFile("debugfs", ".cmd");
            try {
                Files.writeString(f, String.join("\n", requests) + "\n");
                return run(LONG, "debugfs", "-w", "-f", f.toString(), image.toString()).requireOk().output();
            } finally {
                Files.deleteIfExists(f);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code dumpe2fs -h IMG}: superblock field name → value (e.g. "Reserved block count" → "409"). */
    public static Map<String, String> superblock(Path image) {
        Map<String, String> out = new java.util.LinkedHashMap<>();
        for (String line : run(LONG, "dumpe2fs", "-h", image.toString()).requireOk().stdout().split("\n")) {
            int colon = line.indexOf(':');
            if (colon > 0) {
                out.put(line.substring(0, colon).strip(), line.substring(colon + 1).strip());
            }
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------
    // Python scripts (test resources in dev/ext4j/it/)

    /** The uid and gid of "nobody", for permission checks as an unprivileged user. */
    public static final int NOBODY = 65534;

    /**
     * The python3 the scripts run with: the system one when there is one, since a python3 found on
     * root's PATH may be a shim under root's home (pyenv) that an unprivileged user cannot run.
     */
    public static String python3() {
        return Files.isExecutable(Path.of("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
    }

    /** The text of a test resource in this package (e.g. a Python script). */
    public static String resource(String name) {
        try (InputStream in = Tools.class.getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalArgumentException("no test resource " + name + " beside " + Tools.class.getName());
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Runs the script resource {@code script} as {@code python3 -c TEXT ARGS} in {@code cwd}. The
     * script text goes on the command line, so no file needs to be readable by the user it runs as.
     */
    public static Result python(Duration timeout, Path cwd, String script, String... args) {
        List<String> cmd = new ArrayList<>(List.of(python3(), "-c", resource(script)));
        cmd.addAll(List.of(args));
        return run(timeout, null, cwd, cmd);
    }

    /**
     * As {@link #python}, as uid and gid {@link #NOBODY} without supplementary groups ({@code setpriv}).
     * The working directory is entered as root first, so the path leading to it need not be open to nobody;
     * a FUSE mount must have been made with {@code allow_other} for nobody to use it at all.
     */
    public static Result pythonAsNobody(Duration timeout, Path cwd, String script, String... args) {
        return pythonWith(List.of("setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY, "--clear-groups"), timeout, cwd, script, args);
    }

    /**
     * As {@link #pythonAsNobody}, as the user named {@code user}, with its primary group and the
     * supplementary groups the group database gives it ({@code setpriv --init-groups}).
     */
    public static Result pythonAs(String user, Duration timeout, Path cwd, String script, String... args) {
        return pythonWith(List.of("setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"), timeout, cwd, script, args);
    }

    private static Result pythonWith(List<String> prefix, Duration timeout, Path cwd, String script, String... args) {
        List<String> cmd = new ArrayList<>(prefix);
        cmd.addAll(List.of(python3(), "-c", resource(script)));
        cmd.addAll(List.of(args));
        return run(timeout, null, cwd, cmd);
    }

    // ------------------------------------------------------------------------------------------
    // files

    public static String sha256(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] b = new byte[1 << 20];
            int n;
            while ((n = in.read(b)) > 0) {
                md.update(b, 0, n);
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** gunzip SRC to DST. */
    public static void gunzip(Path gz, Path dst) {
        try (InputStream in = new java.util.zip.GZIPInputStream(Files.newInputStream(gz), 1 << 16)) {
            Files.copy(in, dst, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException("gunzip " + gz, e);
        }
    }

    /** Deletes a tree; refuses to descend into a mount point (never deletes inside a live mount). */
    public static void deleteTree(Path root) {
        if (root == null || !Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Result r = run(LONG, "rm", "-rf", "--one-file-system", "--", root.toString());
        if (!r.ok()) {
            System.err.println("cleanup of " + root + " failed: " + r.output());
        }
    }

    /** Creates a fresh scratch directory under java.io.tmpdir. */
    public static Path scratch(String prefix) {
        try {
            return Files.createTempDirectory("ext4j-it-" + prefix + "-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The driver jar as built ({@code -Dext4j.jar}). */
    public static Path builtJar() {
        return Path.of(System.getProperty("ext4j.jar", "../fuse-driver/target/ext4j.jar")).toAbsolutePath().normalize();
    }

    private static Path jarSnapshot;

    /**
     * The driver jar the tests run: a private copy of {@link #builtJar()} and its lib/ directory,
     * taken once per test JVM, so that a rebuild of fuse-driver/target while the tests run (e.g. by
     * someone else working in the same tree) cannot pull the jar from under a starting JVM.
     */
    public static synchronized Path jar() {
        if (jarSnapshot == null) {
            Path built = builtJar();
            if (!Files.isRegularFile(built)) {
                return built; // FuseTestBase reports it
            }
            try {
                Path dir = Files.createTempDirectory("ext4j-it-jar-");
                Path lib = built.resolveSibling("lib");
                if (Files.isDirectory(lib)) {
                    run(LONG, "cp", "-a", lib.toString(), dir.resolve("lib").toString()).requireOk();
                }
                Files.copy(built, dir.resolve("ext4j.jar"));
                jarSnapshot = dir.resolve("ext4j.jar");
                Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(dir)));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot copy " + built, e);
            }
        }
        return jarSnapshot;
    }

    /** The project root ({@code -Dext4j.root}). */
    public static Path root() {
        return Path.of(System.getProperty("ext4j.root", "..")).toAbsolutePath().normalize();
    }

    /** The e2fsprogs test image corpus ({@code -Dext4j.corpus}). */
    public static Path corpus() {
        Path p = Path.of(System.getProperty("ext4j.corpus", "../../shared/corpus/e2fsprogs-tests")).toAbsolutePath().normalize();
        // a checkout elsewhere than beside ../shared still finds the workplace's copy
        Path workplace = Path.of("/work/shared/corpus/e2fsprogs-tests");
        return Files.isDirectory(p) || !Files.isDirectory(workplace) ? p : workplace;
    }

    /** The java binary running the tests: the driver runs under the same JDK. */
    public static String java() {
        return ProcessHandle.current().info().command().orElse("java");
    }
}
