package dev.ext4j.cli;

import dev.ext4j.fs.AtimeMode;
import dev.ext4j.fs.ErrorPolicy;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.fuse.ByteSize;
import dev.ext4j.io.Placement;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A parsed mount command line: {@code [-f] [-o OPTS]... IMAGE MOUNTPOINT}, options in any order (the
 * mount.fuse convention puts them last). Options ext4j knows are kept; generic mount(8) options
 * that mean nothing to a FUSE mount are dropped; anything else is an error.
 */
record MountSpec(Path image, Path mountPoint, boolean foreground, boolean readOnly, boolean debug,
                 List<String> fuseOptions, Path logFile, ErrorPolicy errors, List<String> tuning,
                 String controlName, boolean fakeroot, String transport) {

    /** The FUSE transports: libfuse 3's low-level API (the default) and libfuse 2's path API. */
    static final List<String> TRANSPORTS = List.of("libfuse3", "libfuse2");

    /**
     * The atime flags, as the kernel reads them: the last of relatime (the default), strictatime
     * and noatime wins ({@code atime} and {@code norelatime} mean the default); nodiratime and
     * diratime, lazytime and nolazytime besides.
     */
    private static final Set<String> ATIME = Set.of("atime", "noatime", "relatime", "norelatime", "strictatime", "lazytime",
            "nolazytime", "diratime", "nodiratime");

    /**
     * Every option ext4j accepts (besides the generic ones it ignores), by name: {@code ext4j help}
     * and README.md list each of them, which MountSpecTest checks.
     */
    static final List<String> OPTION_NAMES = java.util.stream.Stream.concat(java.util.stream.Stream.of("ro", "rw", "norecovery",
            "noload", "fakeroot", "allow_other", "allow_root", "default_permissions", "auto_unmount", "uid", "gid", "umask", "debug",
            "log", "errors", "control", "cache_size", "commit", "dirty_expire", "idle_flush", "journal", "offset", "partition", "dev",
            "nodev", "suid", "nosuid", "transport"), ATIME.stream().sorted()).toList();

    /** The control file's name unless {@code -o control=NAME} says otherwise. */
    static final String DEFAULT_CONTROL = ".ext4j-control";

    /** FUSE options passed through to libfuse. */
    private static final Set<String> FUSE_FLAGS = Set.of("allow_other", "allow_root", "default_permissions", "auto_unmount");
    /** mount(8) options with no meaning here (fstab and mount.fuse pass them). */
    private static final Set<String> IGNORED = Set.of("defaults", "auto", "noauto", "user", "nouser", "users", "owner",
            "group", "_netdev", "nofail", "exec", "noexec", "async", "loop");

    static MountSpec parse(List<String> args) throws UsageException {
        List<String> positional = new ArrayList<>();
        List<String> opts = new ArrayList<>();
        boolean foreground = false;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            switch (a) {
                case "-f" -> foreground = true;
                case "-d" -> opts.add("debug");
                case "-o" -> {
                    if (i + 1 >= args.size()) {
                        throw new UsageException("-o needs an option list");
                    }
                    opts.addAll(List.of(args.get(++i).split(",")));
                }
                default -> {
                    if (a.startsWith("-o") && a.length() > 2) {
                        opts.addAll(List.of(a.substring(2).split(",")));
                    } else if (a.startsWith("-")) {
                        throw new UsageException("unknown flag " + a);
                    } else {
                        positional.add(a);
                    }
                }
            }
        }
        if (positional.size() != 2) {
            throw new UsageException("expected IMAGE and MOUNTPOINT, got " + positional.size() + " arguments");
        }
        boolean readOnly = false;
        boolean explicitRw = false;
        boolean noRecovery = false;
        boolean fakeroot = false;
        boolean debug = false;
        Path log = null;
        ErrorPolicy errors = null;
        String control = DEFAULT_CONTROL;
        List<String> fuse = new ArrayList<>();
        List<String> tuning = new ArrayList<>();
        boolean dev = false;
        boolean suid = false;
        String transport = TRANSPORTS.get(0);
        for (String o : opts) {
            if (o.isEmpty() || IGNORED.contains(o) || o.startsWith("x-") || o.startsWith("comment=")) {
                continue;
            }
            if (!OPTION_NAMES.contains(o.contains("=") ? o.substring(0, o.indexOf('=')) : o)) {
                throw new UsageException("unknown mount option " + o);
            }
            if (o.equals("ro")) {
                readOnly = true;
                explicitRw = false;
            } else if (o.equals("rw")) {
                readOnly = false;
                explicitRw = true;
            } else if (o.equals("norecovery") || o.equals("noload")) {
                noRecovery = true;
            } else if (o.equals("fakeroot")) {
                fakeroot = true;
            } else if (o.equals("debug")) {
                debug = true;
            } else if (o.startsWith("errors=")) {
                try {
                    errors = ErrorPolicy.parse(o.substring(7));
                } catch (IllegalArgumentException e) {
                    throw new UsageException(e.getMessage());
                }
            } else if (o.startsWith("control=")) {
                control = o.substring(8);
                if (control.isEmpty() || control.contains("/") || control.equals(".") || control.equals("..") || control.length() > 255) {
                    throw new UsageException("control=NAME needs a file name (no '/', not . or ..)");
                }
            } else if (o.startsWith("cache_size=") || o.startsWith("commit=") || o.startsWith("dirty_expire=")
                    || o.startsWith("journal=") || o.startsWith("idle_flush=") || o.startsWith("offset=") || o.startsWith("partition=")) {
                tune(MountOptions.defaults(), o); // checked now, applied by coreOptions()
                tuning.add(o);
            } else if (ATIME.contains(o)) {
                tuning.add(o);
            } else if (o.equals("dev") || o.equals("nodev")) {
                dev = o.equals("dev"); // FUSE's default is nodev; the last one wins
            } else if (o.equals("suid") || o.equals("nosuid")) {
                suid = o.equals("suid");
            } else if (o.startsWith("transport=")) {
                transport = o.substring(10);
                if (!TRANSPORTS.contains(transport)) {
                    throw new UsageException("transport= takes " + String.join(" or ", TRANSPORTS));
                }
            } else if (o.startsWith("log=")) {
                log = Path.of(o.substring(4));
            } else if (FUSE_FLAGS.contains(o) || o.startsWith("uid=") || o.startsWith("gid=") || o.startsWith("umask=")) {
                fuse.add(o);
            } else {
                throw new UsageException("unknown mount option " + o);
            }
        }
        if (tuning.stream().anyMatch(t -> t.startsWith("offset=")) && tuning.stream().anyMatch(t -> t.startsWith("partition="))) {
            throw new UsageException("offset= and partition= exclude each other");
        }
        if (fakeroot && fuse.stream().anyMatch(f -> f.equals("allow_other") || f.equals("allow_root") || f.equals("default_permissions"))) {
            throw new UsageException("fakeroot serves the mounting user alone, as root: it cannot be combined with allow_other,"
                    + " allow_root or default_permissions");
        }
        if (dev) {
            fuse.add("dev"); // device nodes and setuid files work; for root only (see Main.foreground)
        }
        if (suid) {
            fuse.add("suid");
        }
        if (noRecovery) {
            if (explicitRw) {
                // as the kernel, which refuses a read-write mount that skips the journal's recovery
                throw new UsageException("norecovery (noload) mounts read-only: it cannot be combined with rw");
            }
            readOnly = true;
            tuning.add("norecovery");
        }
        return new MountSpec(Path.of(positional.get(0)), Path.of(positional.get(1)), foreground, readOnly, debug, fuse, log, errors,
                tuning, control, fakeroot, transport);
    }

    /** This command with the image and mount point resolved to real paths. */
    MountSpec withPaths(Path realImage, Path realMountPoint) {
        return new MountSpec(realImage, realMountPoint, foreground, readOnly, debug, fuseOptions, logFile, errors, tuning,
                controlName, fakeroot, transport);
    }

    /** The options for the filesystem core: ro, errors=, the cache and writeback tuning, offset= or partition=. */
    MountOptions coreOptions() {
        MountOptions o = MountOptions.defaults().withReadOnly(readOnly).withErrors(errors).withIdleFlush(DEFAULT_IDLE_FLUSH_MILLIS);
        for (String t : tuning) {
            if (ATIME.contains(t)) {
                continue; // see atimeMode()
            }
            try {
                o = tune(o, t);
            } catch (UsageException e) {
                throw new IllegalStateException("checked by parse()", e);
            }
        }
        return o;
    }

    /** The atime flags' mode: the last of relatime, strictatime and noatime given, relatime without one. */
    AtimeMode atimeMode() {
        AtimeMode mode = AtimeMode.RELATIME;
        for (String t : tuning) {
            switch (t) {
                case "noatime" -> mode = AtimeMode.NOATIME;
                case "strictatime" -> mode = AtimeMode.STRICTATIME;
                case "relatime", "atime", "norelatime" -> mode = AtimeMode.RELATIME;
                default -> { }
            }
        }
        return mode;
    }

    /** lazytime, unless a later nolazytime undid it. */
    boolean lazyTime() {
        return tuning.lastIndexOf("lazytime") > tuning.lastIndexOf("nolazytime");
    }

    /** nodiratime, unless a later diratime undid it. */
    boolean noDirAtime() {
        return tuning.lastIndexOf("nodiratime") > tuning.lastIndexOf("diratime");
    }

    /**
     * How long a mount goes without a change before everything is written home: short, because a
     * FUSE 2 unmount returns before the server has written anything, and the image should be
     * consistent for whoever opens it then.
     */
    static final long DEFAULT_IDLE_FLUSH_MILLIS = 100;

    /**
     * {@code cache_size=SIZE[KMG]}, {@code commit=SECONDS}, {@code dirty_expire=SECONDS},
     * {@code journal=on|off}, {@code idle_flush=MILLISECONDS} (0: off), {@code offset=BYTES},
     * {@code partition=N}; {@code norecovery}.
     */
    private static MountOptions tune(MountOptions o, String opt) throws UsageException {
        if (opt.equals("norecovery")) {
            return o.withNoRecovery(true);
        }
        String key = opt.substring(0, opt.indexOf('='));
        String value = opt.substring(opt.indexOf('=') + 1);
        try {
            return switch (key) {
                case "cache_size" -> o.withWriteback(ByteSize.parse(value), o.flushIntervalMillis(), o.dirtyExpireMillis());
                case "journal" -> switch (value) {
                    case "on" -> o.withJournal(true);
                    case "off" -> o.withJournal(false);
                    default -> throw new IllegalArgumentException("journal is on or off");
                };
                case "idle_flush" -> o.withIdleFlush(Math.max(0, Long.parseLong(value)));
                case "offset" -> o.withPlacement(Placement.atOffset(ByteSize.parse(value)));
                case "partition" -> o.withPlacement(Placement.ofPartition(Integer.parseInt(value)));
                case "commit" -> o.withWriteback(o.cacheBytes(), positive(key, Long.parseLong(value)) * 1000, o.dirtyExpireMillis());
                default -> o.withWriteback(o.cacheBytes(), o.flushIntervalMillis(), positive(key, Long.parseLong(value)) * 1000);
            };
        } catch (IllegalArgumentException e) {
            throw new UsageException("bad value in " + opt + ": " + e.getMessage());
        }
    }

    private static long positive(String key, long v) {
        if (v <= 0) {
            throw new IllegalArgumentException(key + " must be at least 1");
        }
        return v;
    }

    /** The same command for the foreground child of a background mount. */
    List<String> childArgs() {
        List<String> a = new ArrayList<>(List.of("mount", "-f"));
        List<String> o = new ArrayList<>(fuseOptions);
        if (readOnly) {
            o.add("ro");
        }
        if (debug) {
            o.add("debug");
        }
        if (fakeroot) {
            o.add("fakeroot");
        }
        if (errors != null) {
            o.add("errors=" + errors.name().toLowerCase(java.util.Locale.ROOT).replace('_', '-'));
        }
        o.addAll(tuning);
        if (!controlName.equals(DEFAULT_CONTROL)) {
            o.add("control=" + controlName);
        }
        if (!transport.equals(TRANSPORTS.get(0))) {
            o.add("transport=" + transport);
        }
        if (!o.isEmpty()) {
            a.add("-o");
            a.add(String.join(",", o));
        }
        a.add(image.toString());
        a.add(mountPoint.toString());
        return a;
    }

    /** Thrown for a malformed command line; the message is shown with the usage. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }
}
