package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The errors a process sees, with the kernel as the oracle: errno_ops.py performs a list of
 * operations that fail (and a few that must not) and prints "operation -> ERRNO" for each. The same
 * script runs on a kernel loop mount and on an ext4j mount of copies of the same new image, first as
 * root, then (the permission checks) as uid 65534, and the outputs must be identical.
 */
class ErrnoIT extends FuseTestBase {
    private static final Duration SCRIPT_TIMEOUT = Duration.ofMinutes(2);

    /**
     * Lines the kernel prints on every variant: they keep the script honest (an operation that
     * accidentally succeeds or fails for another reason on both sides would otherwise go unnoticed).
     */
    private static final List<String> EXPECTED_EVERYWHERE = List.of(
            "open O_CREAT|O_EXCL over an existing file -> EEXIST",
            "create a 255-byte name -> OK",
            "create a 256-byte name -> ENAMETOOLONG",
            "mkdir a 256-byte name -> ENAMETOOLONG",
            "rename to a 256-byte name -> ENAMETOOLONG",
            "rmdir a non-empty dir -> ENOTEMPTY",
            "rmdir a file -> ENOTDIR",
            "unlink a dir -> EISDIR",
            "mkdir over an existing dir -> EEXIST",
            "open a dir O_WRONLY -> EISDIR",
            "rename a dir into its own subdir -> EINVAL",
            "rename a dir over a non-empty dir -> ENOTEMPTY",
            "rename a file over a dir -> EISDIR",
            "link to a dir -> EPERM",
            "truncate to 2^63 - 1 -> EFBIG",
            "setxattr XATTR_CREATE on an existing attr -> EEXIST",
            "setxattr XATTR_REPLACE on a missing attr -> ENODATA",
            "getxattr a missing attr -> ENODATA",
            "setxattr a value of blocksize+1 bytes -> ENOSPC",
            "access X_OK of a 0644 file -> OK False",
            "run a 0644 script -> EACCES",
            "run a 0100 script -> OK",
            "open a 0444 file O_WRONLY -> OK",
            "create in a 0000 dir -> OK",
            "I am 65534 -> OK",
            "list a 0700 root dir -> EACCES",
            "open a 0644 root file O_WRONLY -> EACCES",
            "unlink someone else's file in a sticky dir -> EPERM",
            "unlink my file in a sticky dir -> OK",
            "getxattr trusted.t -> ENODATA",
            "immutable file: setxattr user.x -> EPERM",
            "immutable file: utime to now -> EPERM",
            "immutable dir: create a file -> EPERM",
            "append-only file: utime to now -> OK",
            "append-only file: utime to given times -> EPERM",
            "append-only file: set an ACL -> EPERM",
            "append-only dir: create a file -> OK",
            "utimensat(OMIT, given) -> OK atime kept, mtime given, ctime moved",
            "utimensat(NOW, OMIT) -> OK atime now, mtime kept, ctime moved",
            "utimensat(OMIT, OMIT) -> OK atime kept, mtime kept, ctime kept",
            "acl/file: mode, access ACL, default ACL -> OK ('0o100664', 'user_obj::6,user:1:7,group_obj::5,mask::6,other::4', 'none')",
            "acl/sub: mode, access ACL, default ACL -> OK ('0o40775', 'user_obj::7,user:1:7,group_obj::5,mask::7,other::5', "
                    + "'user_obj::7,user:1:7,group_obj::5,mask::7,other::5')",
            "acl-plain/file: mode, access ACL, default ACL -> OK ('0o100600', 'none', 'none')",
            "write a setgid file of mine, group not mine: mode after -> OK 0o775",
            "FS_IOC_FSSETXATTR DAX on a dir: xflags after -> OK 0x8000",
            "xf/file: flags -> OK 0x20000c8",
            "punch a hole a setgid file of mine, group not mine: mode after -> OK 0o775",
            "copy_file_range into a setgid file of mine, group not mine: mode after -> OK 0o775",
            "write a setuid file of mine: mode after -> OK 0o755",
            "chmod 02775 a file of mine, group not mine: mode after -> OK 0o775",
            "mkdir in a setgid dir of group 1000: gid, mode -> OK (1000, '0o2755')",
            "create 02755 in a setgid dir of group 1000: mode -> OK 0o755",
            "listxattr of a file with trusted.t and user.u (trusted.* only for CAP_SYS_ADMIN) -> OK ['user.u']");

    /** The kernel's s_maxbytes for extent-mapped files, 2^32 - 1 blocks: 16 TiB - 4 KiB with 4 KiB blocks. */
    private static final List<String> EXPECTED_WITH_EXTENTS = List.of(
            "truncate to the max file size -> OK",
            "truncate to the max file size + 1 -> EFBIG",
            "pwrite 1 byte ending at the max file size -> OK",
            "pwrite 1 byte at the max file size -> EFBIG");

    static Stream<Arguments> variants() {
        return Stream.of(
                Arguments.of("4k", List.of("-b", "4096"), true, List.of()),
                Arguments.of("1k", List.of("-b", "1024"), true, List.of()),
                Arguments.of("ext3", List.of("-t", "ext3", "-b", "4096"), false, List.of()),
                // libfuse 2's path API, where ext4j checks permissions itself
                Arguments.of("4k transport=libfuse2", List.of("-b", "4096"), true, List.of("transport=libfuse2")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void errorsMatchTheKernel(String name, List<String> mkfs, boolean extents, List<String> transport) throws IOException {
        Path dir = newDir("errno-" + name.replace(' ', '-'));
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "64M", mkfs);
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);

        String kernel = onKernel(kernelImage, dir.resolve("kernel"), true, ErrnoIT::runRootThenNobody);
        List<String> kernelLines = kernel.lines().toList();
        List<String> missing = new ArrayList<>(EXPECTED_EVERYWHERE);
        if (extents) {
            missing.addAll(EXPECTED_WITH_EXTENTS);
        }
        missing.removeAll(kernelLines);
        assertEquals(List.of(), missing, "the script does not test what it claims (lines missing from the kernel's output):\n" + kernel);

        // allow_other: without it the kernel refuses every access by another user to a FUSE mount
        List<String> opts = new ArrayList<>(List.of("allow_other"));
        opts.addAll(transport);
        String out = onExt4j(image, dir, ErrnoIT::runRootThenNobody, opts.toArray(String[]::new));
        assertAll("ext4j on " + name,
                () -> assertEquals(List.of(), differences(kernel, out), "operations whose outcome differs from the kernel's"),
                () -> assertEquals(kernel, out, "output differs from the kernel's (order or extra lines)"),
                () -> Tools.e2fsckClean(image));
    }

    /**
     * Mounted by root without allow_other, only root's processes reach the mount, so the kernel's
     * permission checks are left out (no default_permissions): root must still see exactly what
     * the kernel's own checks give it (exec bits, access(), chdir into a 0000 directory).
     */
    @Test
    void rootAloneSeesTheKernelsChecksWithoutDefaultPermissions() throws IOException {
        Path dir = newDir("errno-root-alone");
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);
        String kernel = onKernel(kernelImage, dir.resolve("kernel"), true, mnt -> part(mnt, "root"));
        String out = onExt4j(image, dir, mnt -> {
            MountTable.Entry e = MountTable.find(mnt).orElseThrow();
            String options = e.mountOptions() + "," + e.superOptions();
            assertFalse(options.contains("default_permissions"), "the mount still asks the kernel to check: " + options);
            return part(mnt, "root");
        });
        assertAll(() -> assertEquals(List.of(), differences(kernel, out), "operations whose outcome differs from the kernel's"),
                () -> assertEquals(kernel, out, "output differs from the kernel's (order or extra lines)"),
                () -> Tools.e2fsckClean(image));
    }

    /**
     * Reads move atime as the mount's atime flags say (relatime by default, strictatime, noatime,
     * nodiratime), for files and directories, the same as on the kernel with the same flag.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"relatime", "strictatime", "noatime", "nodiratime"})
    void atimeMovesAsOnTheKernel(String flag) throws IOException {
        Path dir = newDir("atime-" + flag);
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "16M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        String kernel;
        try (KernelMount k = KernelMount.attemptReadWrite(kernelImage, kmnt, "," + flag)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            kernel = part(kmnt, "atime");
        }
        assertEquals(6, kernel.lines().filter(l -> l.contains("-> OK")).count(), kernel);
        String out = onExt4j(image, dir, mnt -> part(mnt, "atime"), flag);
        assertAll(() -> assertEquals(kernel, out, "atime with " + flag), () -> Tools.e2fsckClean(image));
    }

    private static String runRootThenNobody(Path mnt) {
        String root = part(mnt, "root");
        return root + Tools.pythonAsNobody(SCRIPT_TIMEOUT, mnt, "errno_ops.py", "user").requireOk().stdout();
    }

    /** The output of one part of errno_ops.py, run as root in {@code mnt}. */
    private static String part(Path mnt, String part) {
        return Tools.python(SCRIPT_TIMEOUT, mnt, "errno_ops.py", part).requireOk().stdout();
    }

    /** What {@code script} prints on a kernel mount (read-write or read-only) of {@code image} at {@code mnt}. */
    static String onKernel(Path image, Path mnt, boolean readWrite, Function<Path, String> script) throws IOException {
        Files.createDirectories(mnt);
        try (KernelMount k = readWrite ? KernelMount.attemptReadWrite(image, mnt) : KernelMount.attempt(image, mnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            return script.apply(mnt);
        }
    }

    /** What {@code script} prints on an ext4j mount of {@code image} under {@code dir}, whose server must log no unexpected failure. */
    static String onExt4j(Path image, Path dir, Function<Path, String> script, String... opts) throws IOException {
        Path mnt = Files.createDirectories(dir.resolve("ext4j"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"), opts)) {
            String out = script.apply(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
            return out;
        }
    }

    /**
     * A read-only ext4j mount fails every change with EROFS, exactly as a read-only kernel mount,
     * and leaves the image file byte for byte as it was.
     */
    @Test
    void readOnlyMountFailsWritesWithErofs() throws IOException {
        Path dir = newDir("erofs");
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.writeString(src.resolve("file"), "kept content\n");
        Files.createDirectories(src.resolve("dir"));
        Files.writeString(src.resolve("dir/inner"), "inner\n");
        Tools.run(Duration.ofSeconds(10), "setfattr", "-n", "user.note", "-v", "kept", src.resolve("file").toString()).requireOk();
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(src, image, "16M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);
        String sha = Tools.sha256(image);

        String kernel = onKernel(kernelImage, dir.resolve("kernel"), false, mnt -> part(mnt, "ro"));
        String ext4j = onExt4j(image, dir, mnt -> part(mnt, "ro"), "ro");
        List<String> notErofs = kernel.lines()
                .filter(l -> !l.endsWith(" -> EROFS") && !l.startsWith("open a file O_RDONLY ") && !l.startsWith("getxattr ")
                        && !l.startsWith("read dir/inner "))
                .toList();
        assertEquals(List.of(), notErofs, "the script's changes must all fail with EROFS on the kernel:\n" + kernel);
        assertEquals(List.of(), differences(kernel, ext4j), "operations on a read-only mount whose outcome differs from the kernel's");
        assertEquals(kernel, ext4j);
        assertEquals(sha, Tools.sha256(image), "a read-only mount changed the image");
    }

    /** "operation: kernel X, ext4j Y" for every operation whose outcome differs. */
    static List<String> differences(String kernel, String ext4j) {
        return differences(kernel, ext4j, (label, theirs, mine, all) -> false);
    }

    /** Whether ext4j's outcome {@code mine} of check {@code label} passes though the kernel's was {@code theirs}. */
    interface Allowed {
        boolean test(String label, String theirs, String mine, Map<String, String> allMine);
    }

    /** {@link #differences(String, String)}, passing the outcomes {@code allowed} accepts besides the kernel's own. */
    static List<String> differences(String kernel, String ext4j, Allowed allowed) {
        Map<String, String> k = outcomes(kernel);
        Map<String, String> e = outcomes(ext4j);
        List<String> out = new ArrayList<>();
        for (Map.Entry<String, String> op : k.entrySet()) {
            String mine = e.getOrDefault(op.getKey(), "(not run)");
            if (!mine.equals(op.getValue()) && !allowed.test(op.getKey(), op.getValue(), mine, e)) {
                out.add(op.getKey() + ": kernel " + op.getValue() + ", ext4j " + mine);
            }
        }
        e.keySet().stream().filter(op -> !k.containsKey(op)).forEach(op -> out.add(op + ": only on ext4j, " + e.get(op)));
        return out;
    }

    /** label -> outcome of each "label -> outcome" line (a line without an arrow: "(printed)"). */
    static Map<String, String> outcomes(String output) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : output.lines().toList()) {
            int arrow = line.lastIndexOf(" -> ");
            if (arrow > 0) {
                out.put(line.substring(0, arrow), line.substring(arrow + 4));
            } else {
                out.put(line, "(printed)");
            }
        }
        return out;
    }
}
