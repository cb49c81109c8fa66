package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import dev.ext4j.Errno;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every namespace entry point refuses a name that cannot be a directory entry with the same errno
 * ({@link dev.ext4j.dir.Names}): ENAMETOOLONG past 255 bytes, EINVAL for an empty name or one with
 * '/' or NUL; and leaves the filesystem as it was (e2fsck -fn clean, the directory unchanged).
 */
class NameCheckTest {
    @TempDir
    Path work;

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static List<String> names(Ext4FileSystem fs, long dir) throws Exception {
        List<String> out = new ArrayList<>();
        fs.readdir(dir, 0, (n, i, t, next) -> out.add(new String(n, StandardCharsets.UTF_8)));
        return out;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"ext4", "ext3"})
    void everyEntryPointGivesTheSameErrno(String type) throws Exception {
        Path img = Images.mkfs(work.resolve(type + ".img"), "32M", List.of("-t", type, "-b", "1024"), null);
        int reg = Inode.S_IFREG | 0644;
        byte[][] invalid = {new byte[0], b("a/b"), b("/"), {'a', 0, 'b'}};
        byte[] tooLong = b("n".repeat(256));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly(), fs.messages().toString());
            long root = Ext4FileSystem.ROOT_INO;
            long dir = fs.mkdir(root, b("d"), 0755, 0, 0);
            long file = fs.mknod(dir, b("f"), reg, 0, 0, 0, 0);
            List<String> before = names(fs, dir);
            for (byte[] n : invalid) {
                Expect.errno(Errno.EINVAL, () -> fs.lookup(dir, n));
                Expect.errno(Errno.EINVAL, () -> fs.mknod(dir, n, reg, 0, 0, 0, 0));
                Expect.errno(Errno.EINVAL, () -> fs.mkdir(dir, n, 0755, 0, 0));
                Expect.errno(Errno.EINVAL, () -> fs.symlink(dir, n, b("t"), 0, 0));
                Expect.errno(Errno.EINVAL, () -> fs.link(file, dir, n));
                Expect.errno(Errno.EINVAL, () -> fs.unlink(dir, n));
                Expect.errno(Errno.EINVAL, () -> fs.rmdir(dir, n));
                Expect.errno(Errno.EINVAL, () -> fs.rename(dir, b("f"), dir, n));
                Expect.errno(Errno.EINVAL, () -> fs.rename(dir, n, dir, b("g")));
            }
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.lookup(dir, tooLong));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.mknod(dir, tooLong, reg, 0, 0, 0, 0));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.unlink(dir, tooLong));
            Expect.errno(Errno.ENAMETOOLONG, () -> fs.rename(dir, tooLong, dir, b("g")));
            // "." and ".." are names, and taken
            assertEquals(dir, fs.lookup(dir, b(".")));
            assertEquals(root, fs.lookup(dir, b("..")));
            Expect.errno(Errno.EEXIST, () -> fs.mknod(dir, b("."), reg, 0, 0, 0, 0));
            Expect.errno(Errno.EEXIST, () -> fs.mkdir(dir, b(".."), 0755, 0, 0));
            // the longest name is fine everywhere
            byte[] max = b("m".repeat(255));
            fs.link(file, dir, max);
            assertEquals(file, fs.lookup(dir, max));
            fs.unlink(dir, max);
            assertEquals(before, names(fs, dir), "the directory is as it was");
        }
        Images.assertSilentlyClean(img);
    }
}
