package dev.ext4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Expect;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** The window's bounds: inside it reads and writes reach the image at the offset; nothing else does. */
class WindowDeviceTest {
    private final byte[] image = new byte[4096];
    private final MemoryBlockDevice dev = new MemoryBlockDevice(image, false);
    private final WindowDevice window = new WindowDevice(dev, 1024, 2048, "partition 2");

    @Test
    void readsAndWritesLandAtTheOffset() throws IOException {
        window.write(0, ByteBuffer.wrap(new byte[] {1, 2}));
        window.write(2046, ByteBuffer.wrap(new byte[] {3, 4}));
        assertEquals(1, image[1024]);
        assertEquals(4, image[1024 + 2047]);
        ByteBuffer b = ByteBuffer.allocate(2);
        window.read(2046, b);
        assertArrayEquals(new byte[] {3, 4}, b.array());
        assertEquals(2048, window.size());
        assertEquals(2048, window.capacity());
    }

    @Test
    void nothingOutsideTheWindowIsReadOrWritten() {
        byte[] before = image.clone();
        IOException e = assertThrows(IOException.class, () -> window.write(2047, ByteBuffer.allocate(2)));
        assertTrue(e.getMessage().contains("outside partition 2 (2048 bytes at byte 1024"), e.getMessage());
        assertThrows(IOException.class, () -> window.write(-1, ByteBuffer.allocate(1)));
        assertThrows(IOException.class, () -> window.write(Long.MAX_VALUE, ByteBuffer.allocate(1)));
        assertThrows(EOFException.class, () -> window.read(2048, ByteBuffer.allocate(1)));
        assertThrows(EOFException.class, () -> window.read(-512, ByteBuffer.allocate(512)));
        assertThrows(EOFException.class, () -> window.read(0, ByteBuffer.allocate(2049)));
        assertArrayEquals(before, image);
    }

    @Test
    void itGrowsOnlyWithinItself() throws IOException {
        window.grow(2048);
        IOException e = assertThrows(IOException.class, () -> window.grow(2049));
        assertTrue(e.getMessage().contains("2048 bytes") && e.getMessage().contains("cannot grow to 2049"), e.getMessage());
        assertEquals(2048, window.size());
    }

    @Test
    void aWindowThroughReadAroundStaysInside() throws IOException {
        Arrays.fill(image, (byte) 7);
        BlockDevice ra = new ReadAroundDevice(window, 1 << 20);
        ByteBuffer b = ByteBuffer.allocate(16);
        ra.read(2032, b);
        assertEquals(7, b.get(15));
        assertThrows(EOFException.class, () -> ra.read(2040, ByteBuffer.allocate(16)));
        assertEquals(2048, ra.capacity());
    }

    @Test
    void anOffsetPastTheImageIsRefused() {
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> Placement.atOffset(4096).open(dev));
        assertTrue(e.getMessage().contains("offset 4096 is not inside the image (4096 bytes)"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new Placement(512, 1));
        assertThrows(IllegalArgumentException.class, () -> Placement.ofPartition(0));
    }

    @Test
    void anOffsetWindowReachesTheImageEndWithoutATable() throws Ext4Exception, IOException {
        BlockDevice w = Placement.atOffset(1024).open(dev);
        assertEquals(3072, w.size());
        assertTrue(Placement.WHOLE_IMAGE.open(dev) == dev);
    }
}
