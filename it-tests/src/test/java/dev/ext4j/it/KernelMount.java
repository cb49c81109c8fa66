package dev.ext4j.it;

import java.nio.file.Path;
import java.time.Duration;

/**
 * A kernel loop mount of an image, the reference the FUSE view is cross-checked against: read-only
 * ({@code mount -o loop,ro}) to compare views, or read-write on a copy of an image to run the same
 * workload on the kernel's driver. Only used on images the tests built themselves (clean filesystems).
 */
public final class KernelMount implements AutoCloseable {
    private final Path mountPoint;
    private final Tools.Result result;
    private boolean closed;

    private KernelMount(Path mountPoint, Tools.Result result) {
        this.mountPoint = mountPoint;
        this.result = result;
    }

    /**
     * Tries {@code mount -t TYPE -o loop,ro,noload IMG MNT}; check {@link #mounted()}. noload keeps
     * the kernel from even looking at the journal, so a read-only mount cannot write to the image.
     */
    public static KernelMount attempt(Path image, Path mountPoint, String fsType) {
        String opts = fsType.equals("ext2") ? "loop,ro" : "loop,ro,noload";
        Tools.Result r = Tools.run(Duration.ofSeconds(60), "mount", "-t", fsType, "-o", opts, image.toString(), mountPoint.toString());
        return new KernelMount(mountPoint, r);
    }

    public static KernelMount attempt(Path image, Path mountPoint) {
        return attempt(image, mountPoint, "ext4");
    }

    /**
     * Tries a read-write {@code mount -t ext4 -o loop IMG MNT}, for running a workload on the
     * kernel's driver as the oracle; the kernel changes the image, so give it a copy.
     */
    public static KernelMount attemptReadWrite(Path image, Path mountPoint) {
        return attemptReadWrite(image, mountPoint, "");
    }

    /** {@link #attemptReadWrite(Path, Path)} with more mount options ({@code ",noatime"}, say). */
    public static KernelMount attemptReadWrite(Path image, Path mountPoint, String moreOptions) {
        Tools.Result r = Tools.run(Duration.ofSeconds(60), "mount", "-t", "ext4", "-o", "loop" + moreOptions, image.toString(),
                mountPoint.toString());
        return new KernelMount(mountPoint, r);
    }

    public boolean mounted() {
        return result.ok() && MountTable.isMountPoint(mountPoint);
    }

    public Tools.Result result() {
        return result;
    }

    public Path mountPoint() {
        return mountPoint;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (!MountTable.find(mountPoint).filter(e -> !e.fsType().startsWith("fuse")).isPresent()) {
            return;
        }
        Tools.Result r = Tools.run(Duration.ofSeconds(60), "umount", mountPoint.toString());
        if (!r.ok() && MountTable.isMountPoint(mountPoint)) {
            Tools.run(Duration.ofSeconds(60), "umount", "-l", mountPoint.toString());
        }
        if (MountTable.isMountPoint(mountPoint)) {
            throw new IllegalStateException("could not unmount kernel mount " + mountPoint + ": " + r.output());
        }
    }
}
