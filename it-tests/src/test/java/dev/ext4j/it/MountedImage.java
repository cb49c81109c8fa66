package dev.ext4j.it;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;
import org.awaitility.core.ConditionTimeoutException;

/**
 * An image mounted by the packaged driver ({@code java -jar ext4j.jar mount ...}) in background
 * mode, with its server log in a file of our own. {@link #close()} always unmounts: first with
 * {@code ext4j umount}, then {@code fusermount -u}, then {@code umount -l}, and finally kills the
 * server process this mount started if it is still around.
 */
public final class MountedImage implements AutoCloseable {
    /** How long {@code ext4j mount} may take before the attempt counts as hung. */
    public static final Duration MOUNT_TIMEOUT = Duration.ofSeconds(90);
    /** How long {@code ext4j umount} may take (it waits up to 60 s for the server itself). */
    public static final Duration UMOUNT_TIMEOUT = Duration.ofSeconds(90);

    private static final String UNEXPECTED = "unexpected failure";
    /** The FUSE transport every mount asks for ({@code -Dext4j.it.transport}), or null for the default. */
    static final String TRANSPORT = System.getProperty("ext4j.it.transport");

    private final Path image;
    private final Path mountPoint;
    private final Path log;
    private final Tools.Result mountResult;
    private final boolean liveOnReturn;
    private final Optional<MountTable.Entry> entryOnReturn;
    private final long serverPid;
    private boolean closed;
    private Tools.Result umountResult;
    private final List<String> cleanupNotes = new ArrayList<>();

    private MountedImage(Path image, Path mountPoint, Path log, Tools.Result mountResult, boolean liveOnReturn,
                         Optional<MountTable.Entry> entryOnReturn, long serverPid) {
        this.image = image;
        this.mountPoint = mountPoint;
        this.log = log;
        this.mountResult = mountResult;
        this.liveOnReturn = liveOnReturn;
        this.entryOnReturn = entryOnReturn;
        this.serverPid = serverPid;
    }

    /** The CLI command line for {@code ext4j ARGS...} with the tests' JDK. */
    public static List<String> cli(String... args) {
        List<String> cmd = new ArrayList<>(List.of(Tools.java(), "-jar", Tools.jar().toString()));
        if (Boolean.getBoolean("ext4j.lockcheck")) {
            cmd.add(1, "-Dext4j.lockcheck=true"); // dev.ext4j.LockOrder in the driver too: a violation is an EIO and a logged stack
        }
        cmd.addAll(List.of(args));
        return cmd;
    }

    /**
     * Runs {@code ext4j mount -o log=LOG[,OPTS] IMAGE MNT}. The returned object reports whether the
     * mount succeeded; it must be closed either way (a mount that should have been refused but was
     * not is unmounted by close()).
     */
    public static MountedImage attempt(Path image, Path mountPoint, Path log, Map<String, String> env, String... opts) {
        List<String> o = new ArrayList<>();
        if (log != null) {
            o.add("log=" + log);
        }
        if (TRANSPORT != null && Stream.of(opts).noneMatch(x -> x.startsWith("transport="))) {
            o.add("transport=" + TRANSPORT); // the suite run again on another transport (it-tests/pom.xml)
        }
        o.addAll(List.of(opts));
        List<String> args = new ArrayList<>(List.of("mount"));
        if (!o.isEmpty()) {
            args.add("-o");
            args.add(String.join(",", o));
        }
        args.add(image.toString());
        args.add(mountPoint.toString());
        return attemptWith(image, mountPoint, log, env, cli(args.toArray(String[]::new)));
    }

    /** Runs an arbitrary mount command (e.g. mount(8) -t fuse.ext4j) and wraps the result the same way. */
    public static MountedImage attemptWith(Path image, Path mountPoint, Path log, Map<String, String> env, List<String> command) {
        return attemptWith(image, mountPoint, log, env, null, command);
    }

    /** As {@link #attemptWith(Path, Path, Path, Map, List)}, running the command in {@code cwd}. */
    public static MountedImage attemptWith(Path image, Path mountPoint, Path log, Map<String, String> env, Path cwd, List<String> command) {
        Tools.Result r = Tools.run(MOUNT_TIMEOUT, env, cwd, command);
        // Look at the mount table right away: "mount returns once the mount is live" is part of the contract.
        Optional<MountTable.Entry> entry = MountTable.find(mountPoint).filter(e -> e.fsType().startsWith("fuse"));
        boolean live = entry.isPresent();
        long pid = findServer(mountPoint).map(ProcessHandle::pid).orElse(-1L);
        return new MountedImage(image, mountPoint, log, r, live, entry, pid);
    }

    /** Mounts and requires success; waits (briefly) for the mount table if needed. */
    public static MountedImage mount(Path image, Path mountPoint, Path log, String... opts) {
        MountedImage m = attempt(image, mountPoint, log, null, opts);
        if (!m.mountResult.ok()) {
            m.close();
            throw new AssertionError("mount of " + image + " failed\n" + m.mountResult.describe() + "\n--- server log ---\n" + m.log());
        }
        try {
            await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(50)).until(m::isMounted);
        } catch (ConditionTimeoutException e) {
            m.close();
            throw new AssertionError("ext4j mount exited 0 but " + mountPoint + " never appeared in the mount table\n" + m.mountResult.describe());
        }
        return m;
    }

    /** The server: the "mount -f" java process serving this mount point (started by our mount command). */
    static Optional<ProcessHandle> findServer(Path mountPoint) {
        String mnt = mountPoint.toAbsolutePath().normalize().toString();
        return ProcessHandle.allProcesses().filter(p -> {
            String[] a = p.info().arguments().orElse(null);
            if (a == null || a.length < 3) {
                return false;
            }
            List<String> args = List.of(a);
            return args.contains("dev.ext4j.cli.Main") && args.contains("-f") && args.get(args.size() - 1).equals(mnt);
        }).findFirst();
    }

    /** Server processes serving mount points at or below {@code dir}. */
    static List<ProcessHandle> serversUnder(Path dir) {
        Path d = dir.toAbsolutePath().normalize();
        return ProcessHandle.allProcesses().filter(p -> {
            String[] a = p.info().arguments().orElse(null);
            return a != null && a.length > 2 && List.of(a).contains("dev.ext4j.cli.Main") && List.of(a).contains("-f")
                    && a[a.length - 1].startsWith(d.toString() + "/");
        }).toList();
    }

    public Tools.Result mountResult() {
        return mountResult;
    }

    /** True when the mount command exited 0. */
    public boolean mounted() {
        return mountResult.ok();
    }

    /** Whether the mount table listed a FUSE mount on the mount point right when the mount command returned. */
    public boolean liveOnReturn() {
        return liveOnReturn;
    }

    public Optional<MountTable.Entry> entryOnReturn() {
        return entryOnReturn;
    }

    public Path image() {
        return image;
    }

    public Path mountPoint() {
        return mountPoint;
    }

    public Path logFile() {
        return log;
    }

    /** The server pid found right after mounting, or -1. */
    public long serverPid() {
        return serverPid;
    }

    public boolean isMounted() {
        return MountTable.find(mountPoint).filter(e -> e.fsType().startsWith("fuse")).isPresent();
    }

    /** Resolves a path inside the mount. */
    public Path path(String relative) {
        return relative.isEmpty() || relative.equals("/") ? mountPoint : mountPoint.resolve(relative.startsWith("/") ? relative.substring(1) : relative);
    }

    /** The mount still answers: {@code ls -a MNT} succeeds within the timeout (in a child process). */
    public boolean alive() {
        return isMounted() && Tools.run(Duration.ofSeconds(20), "ls", "-a", mountPoint.toString()).ok();
    }

    /**
     * For images whose root directory may itself be damaged: the server still answers. Returns
     * empty when {@code stat MNT} works and {@code ls -a MNT} either works or fails with one of the
     * given (tolerated) errors; otherwise what is wrong (timeout, ENOTCONN, ...).
     */
    public Optional<String> responds(List<String> toleratedErrors) {
        if (!isMounted()) {
            return Optional.of("no longer in the mount table");
        }
        Tools.Result st = Tools.run(Duration.ofSeconds(20), "stat", mountPoint.toString());
        if (!st.ok()) {
            return Optional.of("stat of the mount point failed: " + st.output());
        }
        Tools.Result ls = Tools.run(Duration.ofSeconds(20), "ls", "-a", mountPoint.toString());
        if (ls.ok() || (!ls.timedOut() && toleratedErrors.stream().anyMatch(ls.stderr()::contains))) {
            return Optional.empty();
        }
        return Optional.of("ls of the mount point: " + (ls.timedOut() ? "timed out" : ls.output()));
    }

    /** {@code ls -a MNT} result, for messages. */
    public Tools.Result ls(String relative) {
        return Tools.run(Duration.ofSeconds(20), "ls", "-a", path(relative).toString());
    }

    /** The server log so far (empty if there is none). */
    public String log() {
        if (log == null || !Files.exists(log)) {
            return "";
        }
        try {
            return new String(Files.readAllBytes(log), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Each "unexpected failure" report in the server log, with the stack trace that follows it. */
    public List<String> unexpectedFailures() {
        return unexpectedFailures(log());
    }

    static List<String> unexpectedFailures(String log) {
        List<String> out = new ArrayList<>();
        String[] lines = log.split("\n");
        for (int i = 0; i < lines.length; i++) {
            if (lines[i].contains(UNEXPECTED)) {
                StringBuilder b = new StringBuilder(lines[i]);
                int j = i + 1;
                // the exception and its stack trace: lines that are not a new log record
                while (j < lines.length && j < i + 40 && !lines[j].matches("^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d .*")) {
                    b.append('\n').append(lines[j]);
                    j++;
                }
                out.add(b.toString());
            }
        }
        return out;
    }

    /** The result of the ext4j umount command run by close(), or null if it was not run. */
    public Tools.Result umountResult() {
        return umountResult;
    }

    /**
     * True if close() unmounted with {@code ext4j umount} alone and the server exited; false if a
     * fallback (fusermount, umount -l, kill) was needed.
     */
    public boolean cleanlyUnmounted() {
        return closed && cleanupNotes.isEmpty() && (umountResult == null || umountResult.ok());
    }

    /** What close() had to do beyond {@code ext4j umount}. */
    public List<String> cleanupNotes() {
        return List.copyOf(cleanupNotes);
    }

    private Optional<ProcessHandle> server() {
        return serverPid > 0 ? ProcessHandle.of(serverPid) : Optional.empty();
    }

    /** True while the server process started for this mount is running. */
    public boolean serverAlive() {
        return server().map(ProcessHandle::isAlive).orElse(false);
    }

    /** Unmounts now (same as close(); for use inside try-with-resources). */
    public void unmount() {
        close();
    }

    /** Unmounts with {@code ext4j umount} and falls back to harsher means; never leaves the mount behind. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (isMounted()) {
            umountResult = Tools.run(UMOUNT_TIMEOUT, cli("umount", mountPoint.toString()));
            if (!umountResult.ok()) {
                cleanupNotes.add("ext4j umount failed: " + umountResult.describe());
            }
        }
        if (isMounted()) {
            Tools.Result r = Tools.run(Duration.ofSeconds(30), "fusermount", "-u", mountPoint.toString());
            cleanupNotes.add("still mounted after ext4j umount; fusermount -u: " + (r.ok() ? "ok" : r.output()));
        }
        if (isMounted()) {
            Tools.Result r = Tools.run(Duration.ofSeconds(30), "umount", "-l", mountPoint.toString());
            cleanupNotes.add("still mounted after fusermount -u; umount -l: " + (r.ok() ? "ok" : r.output()));
        }
        Optional<ProcessHandle> s = server();
        if (s.isPresent() && s.get().isAlive()) {
            try {
                s.get().onExit().get(20, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                cleanupNotes.add("server " + serverPid + " still running 20 s after unmount; killed");
                Tools.killTree(s.get());
            }
        }
        // A server we did not see at mount time (e.g. it appeared late) must not survive either.
        findServer(mountPoint).ifPresent(p -> {
            cleanupNotes.add("stray server process " + p.pid() + " for " + mountPoint + "; killed");
            Tools.killTree(p);
        });
        if (isMounted()) {
            throw new IllegalStateException("could not unmount " + mountPoint + ": " + cleanupNotes);
        }
    }

    @Override
    public String toString() {
        return "ext4j mount of " + image + " on " + mountPoint;
    }
}
