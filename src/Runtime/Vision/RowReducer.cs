namespace Serving.Runtime.Vision;

/// <summary>
/// Takes decoded RGBA rows in any order of blocks (top-down or bottom-up) and averages each
/// <c>factor × factor</c> block into one RGB pixel, rounding to nearest; the last block of a row or
/// column averages only the pixels it has (Pillow's <c>Image.reduce</c>). Factor 1 copies.
/// Holds one output row of sums (12 B per output pixel) beside the output.
/// </summary>
internal sealed class RowReducer
{
    private readonly int _width, _height, _factor, _outWidth;
    private readonly byte[] _pixels;
    private readonly uint[] _sums;
    private int _block = -1, _rowsInBlock;

    public RowReducer(int width, int height, int factor)
    {
        _width = width;
        _height = height;
        _factor = factor;
        _outWidth = (width + factor - 1) / factor;
        int outHeight = (height + factor - 1) / factor;
        _pixels = new byte[checked(_outWidth * outHeight * 3)];
        _sums = new uint[_outWidth * 3];
    }

    /// <summary>Adds row <paramref name="y"/> (RGBA, unpremultiplied); rows of one block must arrive together.</summary>
    public void Add(int y, ReadOnlySpan<byte> rgba)
    {
        if (y / _factor != _block)
        {
            Flush();
            _block = y / _factor;
        }

        for (int x = 0, p = 0; x < _width; x++, p += 4)
        {
            int q = x / _factor * 3;
            _sums[q] += rgba[p];
            _sums[q + 1] += rgba[p + 1];
            _sums[q + 2] += rgba[p + 2];
        }

        _rowsInBlock++;
    }

    public RgbImage Result()
    {
        Flush();
        return new RgbImage(_outWidth, (_height + _factor - 1) / _factor, _pixels);
    }

    private void Flush()
    {
        if (_rowsInBlock == 0)
        {
            return;
        }

        int offset = _block * _outWidth * 3;
        for (int ox = 0; ox < _outWidth; ox++)
        {
            uint count = (uint)(Math.Min(_factor, _width - ox * _factor) * _rowsInBlock);
            for (int c = 0; c < 3; c++)
            {
                _pixels[offset + ox * 3 + c] = (byte)((_sums[ox * 3 + c] + count / 2) / count);
            }
        }

        Array.Clear(_sums);
        _rowsInBlock = 0;
    }
}
