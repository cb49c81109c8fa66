package dev.ext4j.cli;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.fuse.Ext4Fuse;
import dev.ext4j.fuse.Ext4LowLevel;
import dev.ext4j.fuse.FuseLoop;
import dev.ext4j.fuse.LibFuse3;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.logging.ConsoleHandler;
import java.util.logging.Level;
import java.util.logging.Logger;
import java.util.logging.SimpleFormatter;

/**
 * The ext4j command line: {@code mount}, {@code umount}, and the mount.fuse convention
 * {@code ext4j IMAGE MOUNTPOINT -o OPTIONS}. A background mount starts the same program in the
 * foreground as a detached child (with its output in a log file) and returns once the kernel shows
 * the mount, or fails with the child's reason.
 */
public final class Main {
    /** The commands, shown after a usage error. */
    static final String SYNOPSIS = """
            usage: ext4j mount [-f] [-o OPTIONS] IMAGE MOUNTPOINT
                   ext4j mount -o remount,ro|rw MOUNTPOINT  (also mount -o remount,ro MOUNTPOINT)
                   ext4j umount MOUNTPOINT
                   ext4j IMAGE MOUNTPOINT [-o OPTIONS]   (mount.fuse convention)
                   ext4j probe IMAGE                    (list partitions and ext2/3/4 filesystems)
            """ + Copy.USAGE + """
                   ext4j demo                           (bin/ext4j: build a sample image and mount it)
                   ext4j help""";
    /** {@code ext4j help}: the commands and every option (MountSpecTest checks it against MountSpec and README.md). */
    static final String USAGE = SYNOPSIS + "\n" + """
            -f stays in the foreground; OPTIONS are comma-separated:
              ro | rw                  read-only (the image opened read-only) or read-write (the default)
              norecovery | noload      read-only, a journal that needs recovery not replayed (the image untouched)
              fakeroot                 treat the mounting user as root inside the image (owners, modes, setuid;
                                       the control file's mknod makes device nodes)
              allow_other | allow_root let other users (or root) use the mount
              default_permissions      check permissions even on a mount only root can reach
              auto_unmount, uid=N, gid=N, umask=M   passed to FUSE
              dev | nodev, suid | nosuid   device nodes and setuid files work (root only; default nodev, nosuid)
              remount                  with ro or rw: switch a running mount (mount -o remount,ro MNT)
              debug                    verbose debug output
              log=FILE                 write the server log to FILE
              errors=continue|remount-ro|panic   what corruption found on a read-write mount does
              control=NAME             name of the control file at the mount root (default .ext4j-control)
              cache_size=SIZE[KMG]     bound of the file data page cache (default 256M)
              commit=SECONDS           how often changes are committed and written home (default 5)
              dirty_expire=SECONDS     how old dirty file data gets before it is written back (default 30)
              idle_flush=MS            write everything home after MS without a change (default 100; 0: off)
              journal=on|off           journal metadata changes (default on, for an image with a journal)
              offset=BYTES             the filesystem starts BYTES into the image (K, M, G suffixes)
              partition=N              mount partition N of an MBR (1-4, logical 5+) or GPT disk image
              transport=libfuse3|libfuse2   libfuse 3's low-level API (the default; libfuse 2 when libfuse3
                                       is missing) or libfuse 2's path API
              relatime | strictatime | noatime   when reads move the access time (default relatime;
                                       atime and norelatime mean the default)
              nodiratime | diratime    never move directories' access time (or do)
              lazytime | nolazytime    keep access times in memory until the inode is written or synced""";
    private static final long MOUNT_TIMEOUT_MS = 60_000;
    /** FUSE worker threads; libfuse would keep up to 10 idle. */
    private static final int WORKER_THREADS = Integer.getInteger("ext4j.workers", 8);

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(List.of(args), System.err));
    }

    static int run(List<String> args, PrintStream err) {
        if (args.isEmpty() || List.of("help", "--help", "-h").contains(args.get(0))) {
            (args.isEmpty() ? err : System.out).println(USAGE);
            return args.isEmpty() ? 2 : 0;
        }
        try {
            return switch (args.get(0)) {
                case "demo" -> {
                    err.println("ext4j: demo is a command of the bin/ext4j launcher: run bin/ext4j demo");
                    yield 2;
                }
                case "mount" -> Remount.requested(args) ? Remount.run(args.subList(1, args.size()), err)
                        : mount(MountSpec.parse(args.subList(1, args.size())), err);
                case "cp" -> Copy.cp(args.subList(1, args.size()), System.out, err);
                case "ls" -> Copy.ls(args.subList(1, args.size()), System.out, err);
                case "umount", "unmount" -> {
                    if (args.size() != 2) {
                        throw new MountSpec.UsageException("umount takes one MOUNTPOINT");
                    }
                    yield Daemon.unmount(Path.of(args.get(1)), err);
                }
                case "probe" -> {
                    if (args.size() != 2) {
                        throw new MountSpec.UsageException("probe takes one IMAGE");
                    }
                    yield Probe.run(Path.of(args.get(1)), System.out, err);
                }
                default -> Remount.requested(args) ? Remount.run(args, err) : mount(MountSpec.parse(args), err);
            };
        } catch (MountSpec.UsageException e) {
            err.println("ext4j: " + e.getMessage());
            err.println(SYNOPSIS);
            err.println("(ext4j help lists the options)");
            return 2;
        }
    }

    private static int mount(MountSpec spec, PrintStream err) {
        Path image = spec.image().toAbsolutePath().normalize();
        Path mnt = spec.mountPoint().toAbsolutePath().normalize();
        if (!Files.isRegularFile(image) && !Files.exists(image)) {
            err.println("ext4j: cannot mount " + spec.image() + ": no such file");
            return 1;
        }
        if (!Files.isDirectory(mnt)) {
            err.println("ext4j: cannot mount on " + spec.mountPoint() + ": not a directory");
            return 1;
        }
        try {
            image = image.toRealPath();
            mnt = mnt.toRealPath();
        } catch (IOException e) {
            err.println("ext4j: " + e.getMessage());
            return 1;
        }
        if (Daemon.isMounted(mnt)) {
            err.println("ext4j: " + mnt + " is already a mount point");
            return 1;
        }
        MountSpec resolved = spec.withPaths(image, mnt);
        // multi-mount protection may watch the image for another host before the mount appears
        long timeout = MOUNT_TIMEOUT_MS + (spec.readOnly() ? 0 : Ext4FileSystem.mmpWaitMillis(image));
        return spec.foreground() ? foreground(resolved, err) : Daemon.start(resolved, err, timeout);
    }

    /** Mounts and serves until unmounted. */
    private static int foreground(MountSpec spec, PrintStream err) {
        configureLogging(spec.debug());
        Ext4FileSystem fs;
        try {
            fs = Ext4FileSystem.open(spec.image(), spec.coreOptions());
        } catch (Ext4Exception e) {
            err.println("ext4j: cannot mount " + spec.image() + ": " + e.getMessage() + " (" + e.errno() + ")");
            return 1;
        }
        for (String m : fs.messages()) {
            err.println("ext4j: " + spec.image() + ": " + m);
        }
        fs.setAtime(spec.atimeMode(), spec.noDirAtime(), spec.lazyTime());
        List<String> opts = new ArrayList<>(spec.fuseOptions());
        long[] ids = ownIds();
        if (ids[0] != 0 && (opts.remove("dev") | opts.remove("suid"))) {
            err.println("ext4j: dev and suid are ignored: only root's mounts may have them (fusermount refuses them too)");
        }
        // libfuse splits -o on commas; a backslash escapes one inside the image path
        opts.add("fsname=" + spec.image().toString().replace("\\", "\\\\").replace(",", "\\,"));
        opts.add("subtype=ext4j");
        // fakeroot: the only user who can reach the mount passes every check, as root does (the
        // kernel's checks would refuse their chown); MountSpec refuses it with allow_other and the like
        boolean kernelChecks = !spec.fakeroot() && (kernelChecksPermissions(ids[0], spec.fuseOptions())
                || opts.contains("default_permissions"));
        opts.remove("default_permissions");
        if (fs.isReadOnly()) {
            opts.add("ro");
        }
        LibFuse3 lib3 = lowLevel(spec, err);
        FuseLoop loop;
        try {
            if (lib3 != null) {
                if (kernelChecks) {
                    opts.add("default_permissions");
                }
                Ext4LowLevel ll = new Ext4LowLevel(lib3, fs, spec.controlName(), spec.mountPoint(), ids, spec.fakeroot(), kernelChecks);
                loop = ll.mount(spec.mountPoint(), fuseArgs(opts, spec.debug()));
            } else {
                // libfuse 2's high-level API: inode numbers from us, 128 KiB writes, and caching
                // that only a read-only mount can afford with paths
                opts.add("use_ino");
                opts.add("big_writes");
                opts.add("max_write=131072");
                if (fs.isReadOnly()) {
                    opts.addAll(List.of("kernel_cache", "entry_timeout=60", "attr_timeout=60", "negative_timeout=60"));
                }
                // the kernel could check only the mode bits of a libfuse 2 mount, not ACLs: ext4j
                // checks instead, so no default_permissions
                Ext4Fuse fuse = new Ext4Fuse(fs, spec.controlName(), spec.mountPoint(), ids, spec.fakeroot(), kernelChecks);
                loop = FuseLoop.mount(fuse, fuse.operations(), spec.mountPoint(), fuseArgs(opts, spec.debug()));
            }
        } catch (RuntimeException e) {
            err.println("ext4j: mount on " + spec.mountPoint() + " failed: " + e.getMessage());
            return 1;
        }
        fs.onPanic(() -> {
            // errors=panic: the error is on disk; stop serving at once, as the kernel would stop
            err.println("ext4j: errors=panic: corruption found on " + spec.image() + "; unmounting");
            Daemon.lazyUnmount(spec.mountPoint());
            Runtime.getRuntime().halt(2);
        });
        Daemon.writePidFile(spec.mountPoint());
        try {
            loop.serve(WORKER_THREADS);
        } finally {
            Daemon.removePidFile(spec.mountPoint());
        }
        return 0;
    }

    /** libfuse's command line: the options, and -d for debug output. */
    private static List<String> fuseArgs(List<String> opts, boolean debug) {
        List<String> args = new ArrayList<>(List.of("-o", String.join(",", opts)));
        if (debug) {
            args.add("-d");
        }
        return args;
    }

    /**
     * libfuse 3, unless the mount asks for libfuse 2: by transport=libfuse2, or by uid=, gid= or
     * umask=, which only libfuse 2's high-level API implements; null also when libfuse 3 is not
     * installed, which is said once.
     */
    private static LibFuse3 lowLevel(MountSpec spec, PrintStream err) {
        if (!spec.transport().equals("libfuse3")) {
            return null;
        }
        if (spec.fuseOptions().stream().anyMatch(o -> o.startsWith("uid=") || o.startsWith("gid=") || o.startsWith("umask="))) {
            err.println("ext4j: uid=, gid= and umask= are libfuse 2 options: serving with transport=libfuse2");
            return null;
        }
        try {
            return LibFuse3.load();
        } catch (UnsatisfiedLinkError e) {
            err.println("ext4j: " + LibFuse3.SONAME + " (libfuse 3.0 to 3.16; Debian's fuse3 and libfuse3-3) is not installed:"
                    + " serving with transport=libfuse2");
            return null;
        }
    }

    /**
     * Whether permissions are checked: by the kernel (default_permissions) with libfuse 3, by
     * ext4j itself with libfuse 2 ({@link Ext4Fuse}). They must be whenever another user
     * can reach the mount: a mount by anyone but root, or with allow_other or allow_root. A mount
     * by root without them admits only root's processes (fuse_allow_current_process()), which
     * pass every check but exec; FUSE checks the exec bits of regular files itself, and sends
     * access() and chdir() here ({@link Ext4Fuse#access}). There the checks decide nothing and
     * cost a GETATTR of a directory after every change in it, as a change makes the kernel drop
     * the directory's attributes.
     */
    public static boolean kernelChecksPermissions(long uid, List<String> fuseOptions) {
        return uid != 0 || fuseOptions.contains("allow_other") || fuseOptions.contains("allow_root");
    }

    /** The uid and gid this server runs as, the mounting user's: the control file belongs to them. */
    public static long[] ownIds() {
        try {
            Path self = Path.of("/proc/self");
            return new long[] {((Number) Files.getAttribute(self, "unix:uid")).longValue(),
                    ((Number) Files.getAttribute(self, "unix:gid")).longValue()};
        } catch (IOException | UnsupportedOperationException e) {
            throw new IllegalStateException("cannot find out which user runs the server: " + e, e);
        }
    }

    private static void configureLogging(boolean debug) {
        System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT ext4j %4$s: %5$s%6$s%n");
        Logger root = Logger.getLogger("");
        for (var h : root.getHandlers()) {
            root.removeHandler(h);
        }
        ConsoleHandler h = new ConsoleHandler();
        h.setFormatter(new SimpleFormatter());
        h.setLevel(debug ? Level.ALL : Level.INFO);
        try {
            h.setEncoding(StandardCharsets.UTF_8.name());
        } catch (IOException e) {
            // keep the default encoding
        }
        root.addHandler(h);
        Logger.getLogger("ext4j").setLevel(debug ? Level.ALL : Level.INFO);
    }

    static void sleep(long ms) {
        try {
            TimeUnit.MILLISECONDS.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
