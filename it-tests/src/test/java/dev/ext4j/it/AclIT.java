package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * POSIX ACLs with the kernel as the oracle: acl_ops.py sets up files and directories with access ACLs
 * naming an unprivileged user and its group (a denying entry on a 0644 file, a 0600 file the ACL lets
 * the user read in a 0700 directory, named groups, masks, exec, an owner the ACL denies) and
 * directories with default ACLs; then root and the user (umask 022, then 077) open, exec, list and
 * create, and root prints the mode and getfacl output of every path. On a kernel loop mount and on an
 * ext4j mount (allow_other, so the user reaches it) of copies of one image the outputs must be the
 * same, with each FUSE transport.
 */
class AclIT extends FuseTestBase {
    /** The unprivileged user the checks run as; created (a system user with its own group) if absent. */
    static final String USER = "builder";
    private static final Duration SCRIPT_TIMEOUT = Duration.ofMinutes(1);
    private static final String SCRIPT = "acl_ops.py";

    /** Beginnings of lines the kernel prints: they keep the script honest. */
    private static final List<String> EXPECTED_ON_THE_KERNEL = List.of(
            "user: open deny O_RDONLY -> EACCES",
            "user: open secret/file O_RDONLY -> OK",
            "user: open secret/file O_WRONLY -> EACCES",
            "user: open grp O_WRONLY -> OK",
            "user: open grpdeny O_RDONLY -> OK",
            "user: open grpdeny-masked O_RDONLY -> EACCES",
            "user: open masked O_WRONLY -> EACCES",
            "user: open own O_RDONLY -> EACCES",
            "user: run exec -> OK",
            "user: run masked -> EACCES",
            "user: readdir drop -> EACCES",
            "user: create in drop -> OK",
            "user: readdir traverse -> EACCES",
            "user: open traverse/file O_RDONLY -> OK",
            "root: open deny O_RDONLY -> OK",
            "root: run root-x-by-mask -> OK",
            "root: run root-no-x -> EACCES",
            "inherit/f022: 0o100664 ",
            "inherit/f077: 0o100664 ",
            "inherit/d077/sub: 0o40750 ",
            "plain/f077: 0o100600 ",
            "plain/d022: 0o40755 ");

    @BeforeAll
    static void user() {
        for (String tool : List.of("setfacl", "getfacl", "useradd")) {
            assumeTrue(Tools.run(Tools.SHORT, "sh", "-c", "command -v " + tool).ok(),
                    tool + " is not installed (Debian: apt-get install acl passwd)");
        }
        if (!Tools.run(Tools.SHORT, "id", "-u", USER).ok()) {
            Tools.run(Tools.SHORT, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", USER).requireOk();
        }
    }

    static Stream<Arguments> transports() {
        return Stream.of(Arguments.of("default transport", List.of()), Arguments.of("transport=libfuse2", List.of("transport=libfuse2")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("transports")
    void accessDecisionsAndInheritedAclsMatchTheKernel(String name, List<String> transport) throws IOException {
        Path dir = newDir("acl");
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "16M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);

        String kernel = ErrnoIT.onKernel(kernelImage, dir.resolve("kernel"), true, AclIT::run);
        List<String> missing = EXPECTED_ON_THE_KERNEL.stream().filter(p -> kernel.lines().noneMatch(l -> l.startsWith(p))).toList();
        assertAll("the script does not test what it claims on the kernel:\n" + kernel,
                () -> assertEquals(List.of(), missing, "lines missing from the kernel's output"),
                () -> Tools.e2fsckClean(kernelImage));

        // allow_other: without it the kernel refuses the user any access to a FUSE mount
        List<String> opts = new ArrayList<>(List.of("allow_other"));
        opts.addAll(transport);
        String out = ErrnoIT.onExt4j(image, dir, AclIT::run, opts.toArray(String[]::new));
        assertAll("ext4j with the " + name,
                () -> assertEquals("", String.join("\n", ErrnoIT.differences(kernel, out)), "checks whose outcome differs from the kernel's"),
                () -> assertEquals(kernel, out, "output differs from the kernel's (order or extra lines)"),
                () -> Tools.e2fsckClean(image));
    }

    /** The whole script on the mount at {@code mnt}: root's setup and checks, the user's with umask 022 and 077, root's listing. */
    private static String run(Path mnt) {
        StringBuilder out = new StringBuilder();
        out.append(Tools.python(SCRIPT_TIMEOUT, mnt, SCRIPT, "setup", USER).requireOk().stdout());
        out.append(Tools.python(SCRIPT_TIMEOUT, mnt, SCRIPT, "root").requireOk().stdout());
        for (String umask : List.of("022", "077")) {
            Tools.Result r = Tools.pythonAs(USER, SCRIPT_TIMEOUT, mnt, SCRIPT, "user", umask).requireOk();
            assertTrue(r.stderr().isEmpty(), r.describe());
            out.append(r.stdout());
        }
        return out.append(Tools.python(SCRIPT_TIMEOUT, mnt, SCRIPT, "show").requireOk().stdout()).toString();
    }
}
