package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * EXT4_IOC_MIGRATE and the inode flags ioctls on an ext3 image (1 KiB blocks, block maps) given the
 * extent feature: files made by mkfs -d are migrated through the control file, the raw ioctl and
 * chattr +e; content stays, debugfs shows extent trees, e2fsck is clean, the kernel reads the same.
 * lsattr and chattr work, and append-only and immutable files behave as on the kernel.
 */
class MigrateIT extends FuseTestBase {
    private static final int EXT4_IOC_MIGRATE = 0x6609;

    private static Path source(Path dir) throws IOException {
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.writeString(src.resolve("small"), "a small file\n");
        byte[] big = new byte[3 << 20]; // 3 MiB of 1 KiB blocks: direct, indirect and double indirect
        new Random(42).nextBytes(big);
        Files.write(src.resolve("big"), big);
        try (RandomAccessFile f = new RandomAccessFile(src.resolve("sparse").toFile(), "rw")) {
            for (long at : new long[] {0, 7 << 10, 300 << 10, 5 << 20}) { // holes in direct, indirect and double indirect ranges
                f.seek(at);
                f.write(("data at " + at).getBytes());
            }
        }
        Path d = Files.createDirectories(src.resolve("d"));
        for (int i = 0; i < 150; i++) {
            Files.writeString(d.resolve(String.format("a-long-enough-file-name-to-fill-directory-blocks-%03d", i)), "f" + i);
        }
        return src;
    }

    /** The raw ioctl, from Python: "OK" or the errno name. */
    private static String migrateIoctl(Path file) {
        return Tools.run(Tools.SHORT, Tools.python3(), "-c", """
                import errno, fcntl, os, sys
                fd = os.open(sys.argv[1], os.O_RDONLY)
                try:
                    fcntl.ioctl(fd, int(sys.argv[2]))
                    print("OK")
                except OSError as e:
                    print(errno.errorcode[e.errno])
                """, file.toString(), Integer.toString(EXT4_IOC_MIGRATE)).requireOk().stdout().strip();
    }

    private static String ctl(Path mnt, String cmd) {
        return Tools.bash(Tools.SHORT, "cd \"$1\" && exec 3<>.ext4j-control && { echo \"$2\" >&3; cat <&3; }", mnt.toString(), cmd).stdout();
    }

    @Test
    void migrateKeepsContentAndTheKernelReadsTheExtentTrees() throws IOException {
        Path dir = newDir("migrate");
        Path image = dir.resolve("disk.img");
        Path src = source(dir);
        Tools.mkfs(src, image, "64M", List.of("-t", "ext3", "-b", "1024"));
        Tools.run(Tools.SHORT, "tune2fs", "-O", "extents", image.toString()).requireOk();
        List<String> files = List.of("small", "big", "sparse");
        Map<String, String> sums = new LinkedHashMap<>();
        for (String f : files) {
            sums.put(f, Tools.sha256(src.resolve(f)));
        }
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            assertTrue(Tools.run(Tools.SHORT, "lsattr", mnt.resolve("big").toString()).requireOk().stdout().startsWith("----------------------"),
                    "block-mapped before");
            assertEquals("ok migrated /small\n", ctl(mnt, "migrate /small"));
            assertEquals("ok migrated " + mnt.resolve("big") + "\n", ctl(mnt, "migrate " + mnt.resolve("big")), "an absolute path inside the mount");
            assertEquals("OK", migrateIoctl(mnt.resolve("sparse")));
            Tools.run(Tools.SHORT, "chattr", "+e", mnt.resolve("d").toString()).requireOk(); // a directory, through FS_IOC_SETFLAGS
            assertEquals("EINVAL", migrateIoctl(mnt.resolve("big")), "extent-mapped already: EINVAL, as the kernel");
            assertTrue(ctl(mnt, "migrate /small").startsWith("error EINVAL: "));
            assertTrue(ctl(mnt, "migrate /nothing").startsWith("error ENOENT: "));
            for (String f : List.of("small", "big", "sparse", "d")) {
                String attrs = Tools.run(Tools.SHORT, "lsattr", "-d", mnt.resolve(f).toString()).requireOk().stdout();
                assertEquals('e', attrs.charAt(14), "lsattr shows the extents flag: " + attrs);
            }
            for (String f : files) {
                assertEquals(sums.get(f), Tools.sha256(mnt.resolve(f)), f + " after migration");
            }
            try (var entries = Files.list(mnt.resolve("d"))) { // closed, or the unmount finds the mount busy
                assertEquals(150, entries.count());
            }
            // the migrated file keeps growing through its extent tree
            Tools.bash(Tools.SHORT, "head -c 100000 /dev/urandom >> \"$1\"", mnt.resolve("sparse").toString()).requireOk();
            sums.put("sparse", Tools.sha256(mnt.resolve("sparse")));
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        for (String f : List.of("small", "big", "sparse", "d")) {
            String stat = Tools.debugfs(image, "stat /" + f);
            assertTrue(stat.contains("Flags: 0x80000") && stat.contains("EXTENTS:"), "debugfs stat /" + f + ":\n" + stat);
        }
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            for (String f : files) {
                assertEquals(sums.get(f), Tools.sha256(kmnt.resolve(f)), "the kernel reads " + f);
            }
        }
    }

    @Test
    void chattrAppendOnlyAndImmutable() throws IOException {
        Path dir = newDir("chattr");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Path f = mnt.resolve("f");
            Files.writeString(f, "one\n");
            Tools.run(Tools.SHORT, "chattr", "+a", f.toString()).requireOk();
            assertEquals("-----a--------e-------", Tools.run(Tools.SHORT, "lsattr", f.toString()).requireOk().stdout().split(" ")[0]);
            assertTrue(Tools.bash(Tools.SHORT, "echo two >> \"$1\"", f.toString()).ok(), "appending to an append-only file works");
            Tools.Result over = Tools.bash(Tools.SHORT, "echo three > \"$1\"", f.toString());
            assertTrue(over.stderr().contains("Operation not permitted"), "overwriting fails: " + over.describe());
            assertFalse(Tools.run(Tools.SHORT, "rm", "-f", f.toString()).ok(), "an append-only file cannot be removed");
            Tools.run(Tools.SHORT, "chattr", "-a", f.toString()).requireOk();

            Tools.run(Tools.SHORT, "chattr", "+i", f.toString()).requireOk();
            assertTrue(Tools.run(Tools.SHORT, "lsattr", f.toString()).requireOk().stdout().startsWith("----i"));
            assertFalse(Tools.bash(Tools.SHORT, "echo four >> \"$1\"", f.toString()).ok(), "an immutable file takes no write");
            assertFalse(Tools.run(Tools.SHORT, "mv", f.toString(), mnt.resolve("g").toString()).ok(), "nor a rename");
            assertFalse(Tools.run(Tools.SHORT, "chmod", "600", f.toString()).ok(), "nor a chmod");
            Tools.run(Tools.SHORT, "chattr", "-i", f.toString()).requireOk();
            assertEquals("one\ntwo\n", Files.readString(f));
            Tools.run(Tools.SHORT, "lsattr", "-d", mnt.toString()).requireOk(); // an ioctl on a directory (FUSE_CAP_IOCTL_DIR)
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        assertTrue(Tools.debugfs(image, "stat /f").contains("Flags: 0x80000"), "no flag left but extents");
    }
}
