package dev.ext4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Which command lines are remounts ({@link Remount}), as mount(8) and mount.fuse write them. */
class RemountArgsTest {
    @TempDir
    java.nio.file.Path dir;

    @Test
    void mountFuseRemountCallIsARemountNotAMount() {
        // what mount -o remount,ro MNT runs through mount.fuse: the mount's current options come along
        List<String> helper = List.of("/abs/disk.img", "/mnt/disk", "-o", "ro,nosuid,nodev,relatime,remount,user_id=0,group_id=0");
        assertTrue(Remount.requested(helper));
        assertThrows(MountSpec.UsageException.class, () -> MountSpec.parse(helper), "a mount would refuse user_id=");
        assertTrue(Remount.requested(List.of("mount", "-oremount,rw", "/mnt/disk")));
        assertFalse(Remount.requested(List.of("mount", "-o", "ro,errors=remount-ro", "disk.img", "/mnt/disk")));
    }

    @Test
    void aRemountOfWhatIsNoMountPointIsRefused() {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = Main.run(List.of("mount", "-o", "remount,ro", dir.toString()), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(1, rc);
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("not a mount point"), err.toString(StandardCharsets.UTF_8));
    }
}
