package dev.ext4j.cli;

import dev.ext4j.fs.AtimeMode;
import dev.ext4j.fs.ErrorPolicy;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.fuse.ByteSize;
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
                 String controlName) {

    /** The control file's name unless {@code -o control=NAME} says otherwise. */
    static final String DEFAULT_CONTROL = ".ext4j-control";

    /** FUSE options passed through to libfuse. */
    private static final Set<String> FUSE_FLAGS = Set.of("allow_other", "allow_root", "default_permissions", "auto_unmount");
    /** mount(8) options with no meaning here (fstab and mount.fuse pass them). */
    private static final Set<String> IGNORED = Set.of("defaults", "auto", "noauto", "user", "nouser", "users", "owner",
            "group", "_netdev", "nofail", "exec", "noexec", "async", "loop");
    /**
     * The atime flags, as the kernel reads them: the last of relatime (the default), strictatime
     * and noatime wins ({@code atime} and {@code norelatime} mean the default); nodiratime and
     * diratime besides. lazytime is accepted: atime updates are written as with relatime.
     */
    private static final Set<String> ATIME = Set.of("atime", "noatime", "relatime", "norelatime", "strictatime", "lazytime",
            "nolazytime", "diratime", "nodiratime");

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
        boolean debug = false;
        Path log = null;
        ErrorPolicy errors = null;
        String control = DEFAULT_CONTROL;
        List<String> fuse = new ArrayList<>();
        List<String> tuning = new ArrayList<>();
        boolean dev = false;
        boolean suid = false;
        for (String o : opts) {
            if (o.isEmpty() || IGNORED.contains(o) || o.startsWith("x-") || o.startsWith("comment=")) {
                continue;
            }
            if (o.equals("ro")) {
                readOnly = true;
            } else if (o.equals("rw")) {
                readOnly = false;
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
                    || o.startsWith("journal=") || o.startsWith("idle_flush=")) {
                tune(MountOptions.defaults(), o); // checked now, applied by coreOptions()
                tuning.add(o);
            } else if (ATIME.contains(o)) {
                tuning.add(o);
            } else if (o.equals("dev") || o.equals("nodev")) {
                dev = o.equals("dev"); // FUSE's default is nodev; the last one wins
            } else if (o.equals("suid") || o.equals("nosuid")) {
                suid = o.equals("suid");
            } else if (o.startsWith("log=")) {
                log = Path.of(o.substring(4));
            } else if (FUSE_FLAGS.contains(o) || o.startsWith("uid=") || o.startsWith("gid=") || o.startsWith("umask=")) {
                fuse.add(o);
            } else {
                throw new UsageException("unknown mount option " + o);
            }
        }
        if (dev) {
            fuse.add("dev"); // device nodes and setuid files work; for root only (see Main.foreground)
        }
        if (suid) {
            fuse.add("suid");
        }
        return new MountSpec(Path.of(positional.get(0)), Path.of(positional.get(1)), foreground, readOnly, debug, fuse, log, errors, tuning, control);
    }

    /** The options for the filesystem core: ro, errors= and the cache and writeback tuning. */
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
     * {@code journal=on|off}, {@code idle_flush=MILLISECONDS} (0: off).
     */
    private static MountOptions tune(MountOptions o, String opt) throws UsageException {
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
        if (errors != null) {
            o.add("errors=" + errors.name().toLowerCase(java.util.Locale.ROOT).replace('_', '-'));
        }
        o.addAll(tuning);
        if (!controlName.equals(DEFAULT_CONTROL)) {
            o.add("control=" + controlName);
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
