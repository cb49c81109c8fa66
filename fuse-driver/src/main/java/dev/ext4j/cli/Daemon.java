package dev.ext4j.cli;

import dev.ext4j.io.ImageUse;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * Background mounts: starting the detached foreground child, watching for the mount to appear,
 * and finding the child again at unmount through its pid file.
 */
final class Daemon {

    private Daemon() {
    }

    /** Per-user state directory for log and pid files. */
    static Path stateDir() {
        String runtime = System.getenv("XDG_RUNTIME_DIR");
        Path base = runtime != null && !runtime.isEmpty() ? Path.of(runtime) : Path.of(System.getProperty("java.io.tmpdir"));
        return base.resolve("ext4j-" + System.getProperty("user.name"));
    }

    private static String key(Path mnt) {
        return mnt.toString().replace('/', '_');
    }

    static Path pidFile(Path mnt) {
        return stateDir().resolve(key(mnt) + ".pid");
    }

    static Path defaultLog(Path mnt) {
        return stateDir().resolve(key(mnt) + ".log");
    }

    static void writePidFile(Path mnt) {
        try {
            Files.createDirectories(stateDir());
            Files.writeString(pidFile(mnt), Long.toString(ProcessHandle.current().pid()));
        } catch (IOException e) {
            System.err.println("ext4j: cannot write pid file: " + e.getMessage());
        }
    }

    static void removePidFile(Path mnt) {
        try {
            Files.deleteIfExists(pidFile(mnt));
        } catch (IOException e) {
            // nothing to clean then
        }
    }

    /** True when /proc/self/mountinfo lists {@code mnt} as a mount point. */
    static boolean isMounted(Path mnt) {
        return mountOptions(mnt).isPresent();
    }

    /** The per-mount options (ro or rw first) of the last mount on {@code mnt}, from /proc/self/mountinfo. */
    static Optional<List<String>> mountOptions(Path mnt) {
        Optional<List<String>> found = Optional.empty();
        for (ImageUse.MountEntry e : ImageUse.mounts()) {
            if (e.mountPoint().equals(mnt.toString())) {
                found = Optional.of(e.options());
            }
        }
        return found;
    }

    /** Starts the foreground child detached and waits until the mount is live or the child fails. */
    static int start(MountSpec spec, PrintStream err, long timeoutMs) {
        Path log = spec.logFile() != null ? spec.logFile() : defaultLog(spec.mountPoint());
        List<String> cmd = new ArrayList<>();
        cmd.add("setsid");
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        // one char per byte of a file name, whatever the locale (see bin/ext4j); later flags win
        cmd.add("-Dfile.encoding=ISO-8859-1");
        cmd.addAll(jvmArgs());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(Main.class.getName());
        cmd.addAll(spec.childArgs());
        Process child;
        long logStart;
        try {
            Files.createDirectories(log.toAbsolutePath().getParent());
            logStart = Files.exists(log) ? Files.size(log) : 0;
            child = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                    .start();
        } catch (IOException e) {
            err.println("ext4j: cannot start the mount process: " + e.getMessage());
            return 1;
        }
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            if (isMounted(spec.mountPoint()) && child.isAlive()) {
                logSince(log, logStart).ifPresent(err::print);
                return 0;
            }
            if (!child.isAlive()) {
                logSince(log, logStart).ifPresent(err::print);
                err.println("ext4j: mount of " + spec.image() + " on " + spec.mountPoint() + " failed (see " + log + ")");
                return child.exitValue() == 0 ? 1 : child.exitValue();
            }
            Main.sleep(20);
        }
        child.destroy();
        err.println("ext4j: mount did not appear within " + timeoutMs / 1000 + " s (see " + log + ")");
        return 1;
    }

    /** JVM flags worth passing on to the child (heap, encoding, system properties). */
    private static List<String> jvmArgs() {
        return childJvmArgs(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
    }

    /**
     * The serving JVM's flags, each with the prefixes of the flags that set the same thing: what
     * bin/ext4j passes (its comment says why), for a mount started without them, as by {@code java
     * -jar ext4j.jar mount}. Left to the JVM's defaults, C2's compilations took more CPU than
     * the serving itself (7.7 of 14.8 s in a create of 10,000 files, which took a third longer,
     * and an ls -l three quarters longer).
     */
    private static final List<ServerFlag> SERVER_FLAGS = List.of(
            new ServerFlag("-XX:TieredStopAtLevel=1", "-XX:TieredStopAtLevel", "-XX:-TieredCompilation", "-Xint", "-Xcomp"),
            new ServerFlag("-XX:+UseParallelGC", "-XX:+UseSerialGC", "-XX:+UseParallelGC", "-XX:+UseG1GC", "-XX:+UseZGC",
                    "-XX:+UseShenandoahGC", "-XX:+UseEpsilonGC"), // two collectors would stop the JVM
            new ServerFlag("-Xmx1g", "-Xmx", "-XX:MaxHeapSize", "-XX:MaxRAM"),
            new ServerFlag("-Xmn32m", "-Xmn", "-XX:NewSize", "-XX:MaxNewSize", "-XX:NewRatio"),
            new ServerFlag("-XX:MaxDirectMemorySize=1t", "-XX:MaxDirectMemorySize"));

    /** A flag of the serving JVM, and the prefixes of the flags that set the same thing. */
    private record ServerFlag(String flag, String... setBy) {
        boolean setIn(List<String> args) {
            return args.stream().anyMatch(a -> Arrays.stream(setBy).anyMatch(a::startsWith));
        }
    }

    /** The {@link #SERVER_FLAGS} the parent sets nothing in place of, then the parent's -X and -D flags. */
    static List<String> childJvmArgs(List<String> parent) {
        List<String> out = new ArrayList<>();
        for (ServerFlag f : SERVER_FLAGS) {
            if (!f.setIn(parent)) {
                out.add(f.flag());
            }
        }
        for (String a : parent) {
            if (a.startsWith("-X") || a.startsWith("-D")) {
                out.add(a);
            }
        }
        return out;
    }

    private static Optional<String> logSince(Path log, long start) {
        try {
            byte[] all = Files.readAllBytes(log);
            if (all.length <= start) {
                return Optional.empty();
            }
            return Optional.of(new String(all, (int) start, all.length - (int) start, StandardCharsets.UTF_8));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /** Unmounts and waits for the serving process to exit, so the image is closed when this returns. */
    static int unmount(Path mountPoint, PrintStream err) {
        Path mnt = mountPoint.toAbsolutePath().normalize();
        try {
            mnt = mnt.toRealPath();
        } catch (IOException e) {
            // a dead FUSE mount cannot be resolved; use the path as given
        }
        Optional<ProcessHandle> server = serverOf(mnt);
        int rc = runQuietly(err, "fusermount", "-u", mnt.toString());
        if (rc != 0) {
            rc = runQuietly(err, "umount", mnt.toString());
        }
        if (rc != 0) {
            err.println("ext4j: cannot unmount " + mnt);
            return 1;
        }
        server.ifPresent(p -> {
            try {
                p.onExit().get(60, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                err.println("ext4j: the ext4j process " + p.pid() + " did not exit within 60 s");
            }
        });
        return 0;
    }

    /**
     * The process serving {@code mnt}, from its pid file. A file left by a killed server is
     * removed: its pid may belong to an unrelated process by now, which unmount must not wait
     * for. The server writes the file after it starts, so a process that started later is not it.
     */
    private static Optional<ProcessHandle> serverOf(Path mnt) {
        Path file = pidFile(mnt);
        Optional<ProcessHandle> p;
        java.time.Instant written;
        try {
            p = ProcessHandle.of(Long.parseLong(Files.readString(file).trim()));
            written = Files.getLastModifiedTime(file).toInstant();
        } catch (IOException | NumberFormatException e) {
            return Optional.empty(); // no pid file: nothing to wait for
        }
        // (a start time derives from the boot time, which /proc gives in whole seconds)
        p = p.filter(h -> h.info().startInstant().map(started -> !started.isAfter(written.plusSeconds(2))).orElse(true));
        if (p.isEmpty()) {
            removePidFile(mnt);
        }
        return p;
    }

    /** Detaches the mount at once (fusermount -u -z), for a server that is about to stop. */
    static void lazyUnmount(Path mountPoint) {
        runQuietly(System.err, "fusermount", "-u", "-z", mountPoint.toString());
        removePidFile(mountPoint);
    }

    static int runQuietly(PrintStream err, String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            int rc = p.waitFor();
            if (rc != 0 && !out.isBlank()) {
                err.print(out);
            }
            return rc;
        } catch (IOException e) {
            return 127;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        }
    }
}
