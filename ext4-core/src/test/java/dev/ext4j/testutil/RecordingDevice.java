package dev.ext4j.testutil;

import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.io.MemoryBlockDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Forwards to an in-memory image and records every write in order. */
public final class RecordingDevice extends ForwardingDevice {
    public record Write(long offset, byte[] bytes) {
    }

    public final List<Write> writes = Collections.synchronizedList(new ArrayList<>());

    public RecordingDevice(byte[] image) {
        super(new MemoryBlockDevice(image, false));
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        byte[] b = new byte[src.remaining()];
        src.duplicate().get(b);
        writes.add(new Write(offset, b));
        inner.write(offset, src);
    }

    /** The image after the first {@code n} writes of a run that started from {@code base}. */
    public byte[] cut(byte[] base, int n) {
        byte[] img = base.clone();
        for (int i = 0; i < n; i++) {
            Write w = writes.get(i);
            System.arraycopy(w.bytes(), 0, img, (int) w.offset(), w.bytes().length);
        }
        return img;
    }
}
