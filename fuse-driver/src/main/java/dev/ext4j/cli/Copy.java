package dev.ext4j.cli;

import dev.ext4j.nio.TreeCopy;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.time.LocalDateTime;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * {@code ext4j cp} and {@code ext4j ls}: files into and out of an image without FUSE, root or a
 * mount, through the ext4 {@code java.nio.file} provider. An argument {@code IMAGE:/path} names a
 * path in the image file IMAGE (the first ':' after which the part before is an existing file);
 * any other argument is a path of this machine.
 */
final class Copy {
    static final String USAGE = "       ext4j cp [-r] [-a] SRC... DEST           (SRC or DEST as IMAGE:/path)\n"
            + "       ext4j ls [-l] [-a] IMAGE:/path...";

    private final PrintStream out;
    private final PrintStream err;
    /** The images the arguments name, each opened once. */
    private final Map<Path, FileSystem> images = new HashMap<>();
    private boolean failed;

    private Copy(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
        java.util.logging.Logger.getLogger("ext4j").setLevel(java.util.logging.Level.WARNING);
    }

    /** The flags of {@code args} (single letters, maybe grouped) and the rest. */
    private record Args(String flags, List<String> operands) {
        static Args parse(List<String> args, String allowed) throws MountSpec.UsageException {
            StringBuilder f = new StringBuilder();
            List<String> rest = new ArrayList<>();
            boolean end = false;
            for (String a : args) {
                if (!end && a.equals("--")) {
                    end = true;
                } else if (!end && a.startsWith("-") && a.length() > 1) {
                    for (char c : a.substring(1).toCharArray()) {
                        if (allowed.indexOf(c) < 0) {
                            throw new MountSpec.UsageException("unknown option -" + c);
                        }
                        f.append(c);
                    }
                } else {
                    rest.add(a);
                }
            }
            return new Args(f.toString(), rest);
        }

        boolean has(char c) {
            return flags.indexOf(c) >= 0;
        }
    }

    /** The image file an argument names, or null for a path of this machine. */
    private static Path imageOf(String arg) {
        for (int i = arg.indexOf(':'); i > 0; i = arg.indexOf(':', i + 1)) {
            Path p = Path.of(arg.substring(0, i));
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        return null;
    }

    /** The path an argument names, its image opened (read-write when {@code write}) on first use. */
    private Path resolve(String arg, boolean write) throws IOException {
        Path image = imageOf(arg);
        if (image == null) {
            return Path.of(arg);
        }
        String inside = arg.substring(image.toString().length() + 1);
        FileSystem fs = images.get(image.toRealPath());
        if (fs == null) {
            fs = FileSystems.newFileSystem(image, Map.of("readOnly", !write));
            images.put(image.toRealPath(), fs);
        }
        return fs.getPath(inside.isEmpty() ? "/" : inside).toAbsolutePath();
    }

    private void fail(String what) {
        err.println("ext4j: " + what);
        failed = true;
    }

    private static String message(IOException e) {
        return e instanceof java.nio.file.FileSystemException f && f.getReason() != null
                ? f.getFile() + (f.getOtherFile() != null ? " and " + f.getOtherFile() : "") + ": " + f.getReason() : e.toString();
    }

    /** Closes every image, which writes it home; a failure here fails the command. */
    private int finish() {
        for (FileSystem fs : images.values()) {
            try {
                fs.close();
            } catch (IOException e) {
                fail("closing the image: " + message(e));
            }
        }
        return failed ? 1 : 0;
    }

    static int cp(List<String> argv, PrintStream out, PrintStream err) throws MountSpec.UsageException {
        Args a = Args.parse(argv, "rRaP");
        if (a.operands().size() < 2) {
            throw new MountSpec.UsageException("cp takes SRC... DEST");
        }
        Copy c = new Copy(out, err);
        try {
            c.copy(a, a.has('a'), a.has('a') || a.has('r') || a.has('R'));
        } catch (IOException e) {
            c.fail(message(e));
        }
        return c.finish();
    }

    private void copy(Args a, boolean preserve, boolean recursive) throws IOException {
        List<String> ops = a.operands();
        String destArg = ops.get(ops.size() - 1);
        Path dest = resolve(destArg, true);
        boolean intoDir = Files.isDirectory(dest);
        if (!intoDir && ops.size() > 2) {
            throw new IOException("target " + destArg + " is not a directory");
        }
        // cp -a keeps hard links between all its sources: one copier for the whole command
        TreeCopy copier = new TreeCopy(preserve, (p, e) -> fail(message(e)));
        for (String srcArg : ops.subList(0, ops.size() - 1)) {
            Path src = resolve(srcArg, false);
            LinkOption[] lo = recursive ? new LinkOption[] {LinkOption.NOFOLLOW_LINKS} : new LinkOption[0];
            if (!Files.exists(src, lo)) {
                fail("cannot stat " + srcArg + ": no such file or directory");
                continue;
            }
            if (!recursive && Files.isDirectory(src)) {
                fail("-r not specified; omitting directory " + srcArg);
                continue;
            }
            // "dir/." copies what is in dir, as cp does
            Path name = src.getFileName();
            boolean contents = name == null || name.toString().equals(".");
            Path target = intoDir && !contents ? dest.resolve(name.toString()) : dest;
            try {
                if (Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(src, lo)) {
                    throw new FileAlreadyExistsException(target.toString(), null, "a directory is in the way");
                }
                copier.copyTree(recursive ? src : src.toRealPath(), target);
            } catch (IOException e) {
                fail(message(e));
            }
        }
    }

    static int ls(List<String> argv, PrintStream out, PrintStream err) throws MountSpec.UsageException {
        Args a = Args.parse(argv, "la");
        if (a.operands().isEmpty()) {
            throw new MountSpec.UsageException("ls takes IMAGE:/path");
        }
        Copy c = new Copy(out, err);
        for (String arg : a.operands()) {
            try {
                if (imageOf(arg) == null) {
                    throw new IOException(arg + " is not IMAGE:/path");
                }
                c.list(c.resolve(arg, false), a.has('l'), a.has('a'));
            } catch (IOException e) {
                c.fail(message(e));
            }
        }
        return c.finish();
    }

    private void list(Path p, boolean longFormat, boolean all) throws IOException {
        if (!Files.isDirectory(p)) {
            print(p, p.toString(), longFormat);
            return;
        }
        List<Path> entries;
        try (Stream<Path> s = Files.list(p)) {
            entries = s.filter(e -> all || !e.getFileName().toString().startsWith(".")).sorted().toList();
        }
        for (Path e : entries) {
            print(e, e.getFileName().toString(), longFormat);
        }
    }

    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm");

    private void print(Path p, String name, boolean longFormat) throws IOException {
        if (!longFormat) {
            out.println(name);
            return;
        }
        PosixFileAttributes a = Files.readAttributes(p, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        Map<String, Object> u = Files.readAttributes(p, "unix:mode,nlink", LinkOption.NOFOLLOW_LINKS);
        String when = LocalDateTime.ofInstant(a.lastModifiedTime().toInstant(), ZoneId.systemDefault()).format(TIME);
        String line = String.format("%s %3d %-8s %-8s %10d %s %s", modeString((int) u.get("mode")), (int) u.get("nlink"),
                a.owner().getName(), a.group().getName(), a.size(), when, name);
        out.println(a.isSymbolicLink() ? line + " -> " + Files.readSymbolicLink(p) : line);
    }

    /** ls -l's mode column: the type letter and rwx with s, S, t and T. */
    static String modeString(int mode) {
        char type = switch (mode & 0xF000) {
            case 0x4000 -> 'd';
            case 0xA000 -> 'l';
            case 0x2000 -> 'c';
            case 0x6000 -> 'b';
            case 0x1000 -> 'p';
            case 0xC000 -> 's';
            default -> '-';
        };
        StringBuilder b = new StringBuilder().append(type);
        String rwx = "rwxrwxrwx";
        for (int i = 0; i < 9; i++) {
            b.append((mode & (0400 >> i)) != 0 ? rwx.charAt(i) : '-');
        }
        special(b, 3, mode & 04000, 's');
        special(b, 6, mode & 02000, 's');
        special(b, 9, mode & 01000, 't');
        return b.toString();
    }

    private static void special(StringBuilder b, int at, int bit, char letter) {
        if (bit != 0) {
            b.setCharAt(at, b.charAt(at) == 'x' ? letter : Character.toUpperCase(letter));
        }
    }
}
